// Command generate streams a text continuation of a prompt and reports the speed:
// the main job of `make run`. Without -model it runs on the repository's demo model,
// models/kjv-demo.gguf (a small model trained on the King James Bible by
// scripts/train-demo-model), or, when that file is missing, on a synthetic model
// (random weights, so the text is gibberish, but the speed is real).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"time"

	"github.com/llamago/llamago/examples/internal/adapterflags"
	"github.com/llamago/llamago/examples/internal/modelfile"
	"github.com/llamago/llamago/examples/internal/samplingflags"
	"github.com/llamago/llamago/llama"
	"github.com/llamago/llamago/llama/gguf"
)

func main() {
	model := flag.String("model", "", "GGUF model file (default: the demo model "+modelfile.Demo+
		", or a synthetic Qwen2-0.5B-shape Q8_0 model when it is missing)")
	prompt := flag.String("p", "In the beginning God", "prompt")
	n := flag.Int("n", 64, "tokens to generate")
	nCtx := flag.Int("ctx", 2048, "context size")
	gpuLayers := flag.Int("ngl", -1, "layers on the GPU (-1: all)")
	threads := flag.Int("t", 0, "threads (0: physical cores)")
	sp := samplingflags.Register(flag.CommandLine)
	adapters := adapterflags.Register(flag.CommandLine)
	verbose := flag.Bool("v", false, "show llama.cpp's log")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if *verbose {
		llama.SetLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})))
	}
	if err := run(ctx, os.Stdout, *model, *prompt, *n, *nCtx, *gpuLayers, *threads, sp, adapters); err != nil {
		fmt.Fprintln(os.Stderr, "generate:", err)
		os.Exit(1)
	}
}

// run writes the prompt and its continuation to out, the rest to stderr.
func run(ctx context.Context, out io.Writer, model, prompt string, n, nCtx, gpuLayers, threads int, sp *llama.SamplingParams, af *adapterflags.Flags) error {
	path, err := modelfile.ResolveDefault(model, "qwen2-0.5b", gguf.TypeQ8_0)
	if err != nil {
		return err
	}
	m, err := llama.LoadModel(ctx, path, &llama.ModelParams{GPULayers: gpuLayers})
	if err != nil {
		return err
	}
	defer m.Close()
	info := m.Info()
	fmt.Fprintf(os.Stderr, "%s: %s, %s, loaded in %v (%s backend)\n", path, info.Description,
		size(info.Size), m.LoadDuration().Round(time.Millisecond), llama.Backend)

	c, err := m.NewContext(&llama.ContextParams{NCtx: nCtx, Threads: threads})
	if err != nil {
		return err
	}
	defer c.Close()
	if af != nil {
		adapters, err := af.Load(m)
		if err != nil {
			return err
		}
		defer adapters.Close()
		if err := adapters.Apply(c); err != nil {
			return err
		}
	}
	s, err := llama.NewSamplerFromParams(m, sp)
	if err != nil {
		return err
	}
	defer s.Close()
	if gpuLayers != 0 && llama.SupportsGPUOffload() {
		// The GPU does the heavy part of sampling: for the default chain it narrows each row
		// to the few thousand logits that hold the top k, so the CPU does not read 128k.
		if _, err := c.SetBackendSampler(0, s); err != nil {
			return err
		}
	}

	fmt.Fprint(out, prompt)
	var res llama.GenerateResult
	for piece, err := range c.GenerateText(ctx, prompt, s, &llama.GenerateOptions{MaxTokens: n, Result: &res}) {
		if err != nil {
			return err
		}
		fmt.Fprint(out, piece)
	}
	fmt.Fprintln(out)
	fmt.Fprintf(os.Stderr, "prompt: %d tokens, %.1f t/s | generation: %d tokens, %.1f t/s | finish: %s (seed %d)\n",
		res.PromptTokens, res.PromptTokensPerSecond(), res.GeneratedTokens, res.GenerationTokensPerSecond(),
		res.FinishReason, s.Seed())
	return nil
}

func size(b uint64) string {
	if b < 1<<30 {
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	}
	return fmt.Sprintf("%.2f GiB", float64(b)/(1<<30))
}
