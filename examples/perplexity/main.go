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
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"time"

	"github.com/llamago/llamago/llama"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "perplexity:", err)
		os.Exit(1)
	}
}

func run() error {
	model := flag.String("m", "", "GGUF model file (required)")
	file := flag.String("f", "", "text file (required)")
	nCtx := flag.Int("c", 512, "chunk size in tokens (llama-perplexity's -c)")
	nBatch := flag.Int("b", 2048, "batch size: -b/-c chunks are decoded together")
	nUBatch := flag.Int("ub", 512, "micro-batch size")
	chunks := flag.Int("chunks", 0, "most chunks to evaluate (0: all)")
	gpuLayers := flag.Int("ngl", -1, "layers on the GPU (-1: all)")
	threads := flag.Int("t", 0, "threads (0: physical cores)")
	fa := flag.String("fa", "auto", "flash attention: on, off, auto")
	verbose := flag.Bool("v", false, "show llama.cpp's log")
	flag.Parse()
	if *model == "" || *file == "" {
		flag.Usage()
		return fmt.Errorf("-m and -f are required")
	}
	var flash llama.FlashAttention
	switch *fa {
	case "auto":
		flash = llama.FlashAttentionAuto
	case "on":
		flash = llama.FlashAttentionOn
	case "off":
		flash = llama.FlashAttentionOff
	default:
		return fmt.Errorf("-fa %q: want on, off or auto", *fa)
	}
	if *verbose {
		llama.SetLogger(slog.New(slog.NewTextHandler(os.Stderr, nil)))
	}
	text, err := os.ReadFile(*file)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	m, err := llama.LoadModel(ctx, *model, &llama.ModelParams{GPULayers: *gpuLayers})
	if err != nil {
		return err
	}
	defer m.Close()

	start := time.Now()
	res, err := m.Perplexity(ctx, string(text), &llama.PerplexityParams{
		Context: llama.ContextParams{NCtx: *nCtx, NBatch: *nBatch, NUBatch: *nUBatch, Threads: *threads, FlashAttention: flash},
		Chunks:  *chunks,
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
