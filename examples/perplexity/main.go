// Command perplexity measures a model's perplexity on a text file with llama.cpp's
// method (llama-perplexity's default mode), so the two can be compared on the same
// build: progress on stderr, then upstream's final line on stdout:
//
//	Final estimate: PPL = 8.1234 +/- 0.05678
//
// Usage: perplexity -m model.gguf -f wiki.test.raw [-c 512] [-b 2048] [--chunks N]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"time"

	"github.com/llamago/llamago/examples/internal/cli"
	"github.com/llamago/llamago/llama"
	"github.com/llamago/llamago/llama/gguf"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "perplexity:", err)
		os.Exit(1)
	}
}

func run() error {
	f := cli.New("perplexity", "Measures a model's perplexity on a text file as llama-perplexity does (its flags).")
	f.CtxSize = 512
	f.Register(cli.Model, cli.Context)
	var file string
	var chunks int
	g := f.Group("perplexity")
	g.String(&file, "-f, --file", "FNAME", "text file (required)")
	g.Int(&chunks, "--chunks", "most chunks to evaluate (0: all)")
	if err := f.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		os.Exit(2)
	}
	if file == "" {
		f.PrintHelp(os.Stderr)
		return fmt.Errorf("-f is required")
	}
	if f.Verbose {
		llama.SetLogger(slog.New(slog.NewTextHandler(os.Stderr, nil)))
	}
	mp, err := f.ModelFlags.Params()
	if err != nil {
		return err
	}
	cp, err := f.ContextFlags.Params()
	if err != nil {
		return err
	}
	text, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	path, err := f.ModelPath(ctx, gguf.TypeQ8_0)
	if err != nil {
		return err
	}
	m, err := llama.LoadModel(ctx, path, mp)
	if err != nil {
		return err
	}
	defer m.Close()

	start := time.Now()
	res, err := m.Perplexity(ctx, string(text), &llama.PerplexityParams{
		Context: *cp,
		Chunks:  chunks,
		Progress: func(p llama.PerplexityProgress) {
			// upstream's progress format: [chunk]ppl,
			fmt.Fprintf(os.Stderr, "[%d]%.4f,", p.Chunk, p.PPL)
			if p.Chunk == p.Chunks {
				fmt.Fprintln(os.Stderr)
			}
		},
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "perplexity: %d chunks of %d tokens, %d tokens scored in %.2f s\n",
		res.Chunks, res.NCtx, res.Tokens, time.Since(start).Seconds())
	fmt.Println(res)
	return nil
}
