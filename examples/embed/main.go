// Command embed prints embeddings of texts, or reranking scores of documents, as JSON.
//
//	embed -model bge-small.gguf "first text" "second text"        # one vector per text
//	embed -model bge-small.gguf -f texts.txt                      # one text per line
//	embed -model reranker.gguf -query "what is a llama?" doc1 doc2 # one score per document
//
// Output: {"model": ..., "pooling": ..., "data": [{"index": 0, "embedding": [...]}, ...]}
// (OpenAI's embeddings layout) or, with -query, {"results": [{"index": 0, "score": ...}]}.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"

	"github.com/llamago/llamago/llama"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "embed:", err)
		os.Exit(1)
	}
}

type embedding struct {
	Index     int         `json:"index"`
	Embedding []float32   `json:"embedding,omitempty"`
	Tokens    [][]float32 `json:"token_embeddings,omitempty"`
}

type score struct {
	Index    int     `json:"index"`
	Score    float32 `json:"score"`
	Document string  `json:"document"`
}

func run() error {
	model := flag.String("model", "", "GGUF model file (required)")
	file := flag.String("f", "", "read texts from this file, one per line (- = stdin)")
	query := flag.String("query", "", "rerank the texts as documents for this query (needs a reranker)")
	pooling := flag.String("pooling", "", "pooling: none (per-token), mean, cls, last, rank (default: the model's)")
	normalize := flag.Bool("normalize", true, "L2-normalise embeddings")
	nSeq := flag.Int("parallel", 8, "texts per decode (sequences)")
	nBatch := flag.Int("b", 2048, "batch size: the longest text, and most tokens per decode")
	gpuLayers := flag.Int("ngl", -1, "layers on the GPU (-1: all)")
	threads := flag.Int("t", 0, "threads (0: physical cores)")
	verbose := flag.Bool("v", false, "show llama.cpp's log")
	flag.Parse()
	if *model == "" {
		flag.Usage()
		return fmt.Errorf("-model is required")
	}
	texts := flag.Args()
	if *file != "" {
		more, err := readLines(*file)
		if err != nil {
			return err
		}
		texts = append(texts, more...)
	}
	if len(texts) == 0 {
		return fmt.Errorf("no texts: pass them as arguments or with -f")
	}
	if *verbose {
		llama.SetLogger(slog.New(slog.NewTextHandler(os.Stderr, nil)))
	}
	pool, err := llama.ParsePoolingType(*pooling)
	if err != nil {
		return err
	}
	if *query != "" && pool == llama.PoolingDefault {
		pool = llama.PoolingRank
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	m, err := llama.LoadModel(ctx, *model, &llama.ModelParams{GPULayers: *gpuLayers})
	if err != nil {
		return err
	}
	defer m.Close()
	c, err := m.NewContext(&llama.ContextParams{
		Embeddings: true, Pooling: pool, NSeqMax: *nSeq, KVUnified: true,
		NCtx: *nBatch, NBatch: *nBatch, NUBatch: *nBatch, Threads: *threads,
	})
	if err != nil {
		return err
	}
	defer c.Close()

	enc := json.NewEncoder(os.Stdout)
	if *query != "" {
		scores, err := c.Rerank(ctx, *query, texts)
		if err != nil {
			return err
		}
		res := make([]score, len(scores))
		for i, s := range scores {
			res[i] = score{Index: i, Score: s, Document: texts[i]}
		}
		return enc.Encode(map[string]any{"model": m.Info().Name, "query": *query, "results": res})
	}
	opts := &llama.EmbedParams{Normalize: *normalize}
	data := make([]embedding, len(texts))
	if c.Pooling() == llama.PoolingNone {
		vecs, err := c.TokenEmbeddings(ctx, texts, opts)
		if err != nil {
			return err
		}
		for i, v := range vecs {
			data[i] = embedding{Index: i, Tokens: v}
		}
	} else {
		vecs, err := c.Embed(ctx, texts, opts)
		if err != nil {
			return err
		}
		for i, v := range vecs {
			data[i] = embedding{Index: i, Embedding: v}
		}
	}
	return enc.Encode(map[string]any{"model": m.Info().Name, "pooling": c.Pooling().String(), "data": data})
}

func readLines(path string) ([]string, error) {
	f := os.Stdin
	if path != "-" {
		var err error
		if f, err = os.Open(path); err != nil {
			return nil, err
		}
		defer f.Close()
	}
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	for sc.Scan() {
		if s := strings.TrimSpace(sc.Text()); s != "" {
			lines = append(lines, s)
		}
	}
	return lines, sc.Err()
}
