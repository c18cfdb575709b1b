// Command generate streams a text continuation of a prompt and reports the speed:
// the main job of `make run`. Without -model it runs on a synthetic model (random
// weights, so the text is gibberish, but the speed is real).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"time"

	"github.com/llamago/llamago/examples/internal/modelfile"
	"github.com/llamago/llamago/examples/internal/samplingflags"
	"github.com/llamago/llamago/llama"
	"github.com/llamago/llamago/llama/gguf"
)

func main() {
	model := flag.String("model", "", "GGUF model file (default: a synthetic Qwen2-0.5B-shape Q8_0 model)")
	prompt := flag.String("p", "The three most useful things to know about llamas are", "prompt")
	n := flag.Int("n", 64, "tokens to generate")
	nCtx := flag.Int("ctx", 2048, "context size")
	gpuLayers := flag.Int("ngl", -1, "layers on the GPU (-1: all)")
	threads := flag.Int("t", 0, "threads (0: physical cores)")
	sp := samplingflags.Register(flag.CommandLine)
	verbose := flag.Bool("v", false, "show llama.cpp's log")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if *verbose {
		llama.SetLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})))
	}
	if err := run(ctx, *model, *prompt, *n, *nCtx, *gpuLayers, *threads, sp); err != nil {
		fmt.Fprintln(os.Stderr, "generate:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, model, prompt string, n, nCtx, gpuLayers, threads int, sp *llama.SamplingParams) error {
	path, err := modelfile.Resolve(model, "qwen2-0.5b", gguf.TypeQ8_0)
	if err != nil {
		return err
	}
	m, err := llama.LoadModel(ctx, path, &llama.ModelParams{GPULayers: gpuLayers})
	if err != nil {
		return err
	}
	defer m.Close()
	info := m.Info()
	fmt.Fprintf(os.Stderr, "%s: %s, %.2f GiB, loaded in %v (%s backend)\n", path, info.Description,
		float64(info.Size)/(1<<30), m.LoadDuration().Round(time.Millisecond), llama.Backend)

	c, err := m.NewContext(&llama.ContextParams{NCtx: nCtx, Threads: threads})
	if err != nil {
		return err
	}
	defer c.Close()
	s, err := llama.NewSamplerFromParams(m, sp)
	if err != nil {
		return err
	}
	defer s.Close()
	if gpuLayers != 0 && llama.SupportsGPUOffload() {
		// Sampling on the GPU saves copying the logits and sorting them on the CPU per token.
		if _, err := c.SetBackendSampler(0, s); err != nil {
			return err
		}
	}

	fmt.Print(prompt)
	var res llama.GenerateResult
	for piece, err := range c.GenerateText(ctx, prompt, s, &llama.GenerateOptions{MaxTokens: n, Result: &res}) {
		if err != nil {
			return err
		}
		fmt.Print(piece)
	}
	fmt.Println()
	fmt.Fprintf(os.Stderr, "prompt: %d tokens, %.1f t/s | generation: %d tokens, %.1f t/s | finish: %s (seed %d)\n",
		res.PromptTokens, res.PromptTokensPerSecond(), res.GeneratedTokens, res.GenerationTokensPerSecond(),
		res.FinishReason, s.Seed())
	return nil
}
