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
	"runtime/pprof"
	"time"

	"github.com/llamago/llamago/examples/internal/adapterflags"
	"github.com/llamago/llamago/examples/internal/draftflags"
	"github.com/llamago/llamago/examples/internal/modelfile"
	"github.com/llamago/llamago/examples/internal/samplingflags"
	"github.com/llamago/llamago/llama"
	"github.com/llamago/llamago/llama/gguf"
)

func main() {
	model := flag.String("model", "", "GGUF model file (default: the demo model "+modelfile.Demo+
		"; "+modelfile.Synthetic+"SHAPE: random weights, e.g. "+modelfile.Synthetic+"qwen2-0.5b)")
	prompt := flag.String("p", "In the beginning God", "prompt")
	n := flag.Int("n", 64, "tokens to generate")
	nCtx := flag.Int("ctx", 2048, "context size")
	gpuLayers := flag.Int("ngl", -1, "layers on the GPU (-1: all)")
	threads := flag.Int("t", 0, "threads (0: physical cores)")
	sp := samplingflags.Register(flag.CommandLine)
	adapters := adapterflags.Register(flag.CommandLine)
	draft := draftflags.Register(flag.CommandLine)
	verbose := flag.Bool("v", false, "show llama.cpp's log")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the run to this file (go tool pprof)")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "generate:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if *verbose {
		llama.SetLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})))
	}
	o := options{model: *model, prompt: *prompt, n: *n, nCtx: *nCtx, gpuLayers: *gpuLayers, threads: *threads,
		sampling: sp, adapters: adapters, draft: draft}
	if err := run(ctx, os.Stdout, o); err != nil {
		fmt.Fprintln(os.Stderr, "generate:", err)
		os.Exit(1)
	}
}

type options struct {
	model, prompt               string
	n, nCtx, gpuLayers, threads int
	sampling                    *llama.SamplingParams
	adapters                    *adapterflags.Flags // nil: none
	draft                       *draftflags.Flags   // nil: no speculative decoding
}

// run writes the prompt and its continuation to out, the rest to stderr.
func run(ctx context.Context, out io.Writer, o options) error {
	path, err := modelfile.ResolveDefault(o.model, gguf.TypeQ8_0)
	if err != nil {
		return err
	}
	m, err := llama.LoadModel(ctx, path, &llama.ModelParams{GPULayers: o.gpuLayers})
	if err != nil {
		return err
	}
	defer m.Close()
	info := m.Info()
	fmt.Fprintf(os.Stderr, "%s: %s, %s, loaded in %v (%s backend)\n", path, info.Description,
		size(info.Size), m.LoadDuration().Round(time.Millisecond), llama.Backend)

	c, err := m.NewContext(&llama.ContextParams{NCtx: o.nCtx, Threads: o.threads})
	if err != nil {
		return err
	}
	defer c.Close()
	if o.adapters != nil {
		adapters, err := o.adapters.Load(m)
		if err != nil {
			return err
		}
		defer adapters.Close()
		if err := adapters.Apply(c); err != nil {
			return err
		}
	}
	gopts := &llama.GenerateParams{MaxTokens: o.n}
	if o.draft != nil {
		drafts, err := o.draft.Load(ctx, m, o.gpuLayers, o.nCtx)
		if err != nil {
			return err
		}
		defer drafts.Close()
		if drafts != nil {
			d, err := drafts.New()
			if err != nil {
				return err
			}
			if c, ok := d.(io.Closer); ok {
				defer c.Close()
			}
			gopts.Draft, gopts.DraftMax = d, drafts.Max
		}
	}
	s, err := llama.NewSamplerFromParams(m, o.sampling)
	if err != nil {
		return err
	}
	defer s.Close()
	if o.gpuLayers != 0 && llama.SupportsGPUOffload() && gopts.Draft == nil {
		// The GPU does the heavy part of sampling: for the default chain it narrows each row
		// to the few thousand logits that hold the top k, so the CPU does not read 128k.
		if _, err := c.SetBackendSampler(0, s); err != nil {
			return err
		}
	}

	fmt.Fprint(out, o.prompt)
	for piece, err := range c.GenerateText(ctx, o.prompt, s, gopts) {
		if err != nil {
			return err
		}
		fmt.Fprint(out, piece)
	}
	fmt.Fprintln(out)
	res := c.LastGeneration()
	fmt.Fprintf(os.Stderr, "prompt: %d tokens, %.1f t/s | generation: %d tokens, %.1f t/s | finish: %s (seed %d)\n",
		res.PromptTokens, res.PromptTokensPerSecond(), res.GeneratedTokens, res.GenerationTokensPerSecond(),
		res.FinishReason, s.Seed())
	if gopts.Draft != nil {
		fmt.Fprintf(os.Stderr, "speculative: %d drafted, %d accepted (%.1f%%)\n", res.Drafted, res.DraftAccepted,
			100*float64(res.DraftAccepted)/float64(max(res.Drafted, 1)))
	}
	return nil
}

func size(b uint64) string {
	if b < 1<<30 {
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	}
	return fmt.Sprintf("%.2f GiB", float64(b)/(1<<30))
}
