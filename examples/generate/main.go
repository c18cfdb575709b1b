// Command generate streams a text continuation of a prompt and reports the speed:
// the main job of `make run`. It takes llama.cpp's flags (-m, -hf, -p, -n, -c, -ngl,
// every sampler; -h lists them). Without -m it runs on the repository's demo model,
// models/kjv-demo.gguf (a small model trained on the King James Bible by
// scripts/train-demo-model).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"time"

	"github.com/llamago/llamago/examples/internal/adapterflags"
	"github.com/llamago/llamago/examples/internal/cli"
	"github.com/llamago/llamago/examples/internal/draftflags"
	"github.com/llamago/llamago/llama"
	"github.com/llamago/llamago/llama/gguf"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Stdout, os.Args[1:]...); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		if errors.Is(err, cli.ErrUsage) {
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "generate:", err)
		os.Exit(1)
	}
}

type options struct {
	*cli.Flags
	adapters   *adapterflags.Flags
	draft      *draftflags.Flags
	cpuProfile string
}

// parseFlags reads the command line: llama.cpp's flags (package cli) with generate's defaults.
func parseFlags(args []string) (*options, error) {
	f := cli.New("generate", "Streams a continuation of a prompt and reports the speed.")
	f.Prompt, f.NPredict, f.CtxSize = "In the beginning God", 64, 2048
	f.Register(cli.Model, cli.Context, cli.Prompt, cli.Sampling)
	o := &options{Flags: f}
	o.adapters = adapterflags.Register(f.Group("adapters"))
	o.draft = draftflags.Register(f.Group("speculative decoding"))
	f.Group("profiling").String(&o.cpuProfile, "--cpuprofile", "FNAME", "write a CPU profile of the run to this file (go tool pprof)")
	if err := f.Parse(args); err != nil {
		return nil, err
	}
	return o, nil
}

// run parses args and writes the prompt and its continuation to out, the rest to stderr.
func run(ctx context.Context, out io.Writer, args ...string) error {
	o, err := parseFlags(args)
	if err != nil {
		return err
	}
	if o.Verbose {
		llama.SetLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})))
		defer llama.SetLogger(nil)
	}
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	prompt, err := o.Text()
	if err != nil {
		return err
	}
	mp, err := o.ModelFlags.Params()
	if err != nil {
		return err
	}
	cp, err := o.ContextFlags.Params()
	if err != nil {
		return err
	}
	sp, err := o.SamplingFlags.Params()
	if err != nil {
		return err
	}
	path, err := o.ModelPath(ctx, gguf.TypeQ8_0)
	if err != nil {
		return err
	}
	if mp, cp, err = o.Fit(ctx, path, mp, cp, os.Stderr); err != nil {
		return err
	}
	m, err := llama.LoadModel(ctx, path, mp)
	if err != nil {
		return err
	}
	defer m.Close()
	info := m.Info()
	fmt.Fprintf(os.Stderr, "%s: %s, %s, loaded in %v (%s backend)\n", path, info.Description,
		size(info.Size), m.LoadDuration().Round(time.Millisecond), llama.Backend)

	c, err := m.NewContext(cp)
	if err != nil {
		return err
	}
	defer c.Close()
	adapters, err := o.adapters.Load(m)
	if err != nil {
		return err
	}
	defer adapters.Close()
	if err := adapters.Apply(c); err != nil {
		return err
	}
	gopts := &llama.GenerateParams{MaxTokens: o.MaxTokens(), IgnoreEOG: o.IgnoreEOS}
	{
		drafts, err := o.draft.Load(ctx, m, mp.GPULayers, c.NCtx())
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
	s, err := llama.NewSamplerFromParams(m, sp)
	if err != nil {
		return err
	}
	defer s.Close()
	fmt.Fprint(out, prompt)
	for piece, err := range c.GenerateText(ctx, prompt, s, gopts) {
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
