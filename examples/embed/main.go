// Command embed prints embeddings of texts, or reranking scores of documents, as JSON.
//
//	embed -m bge-small.gguf "first text" "second text"         # one vector per text
//	embed -m bge-small.gguf -f texts.txt                       # one text per line
//	embed -m reranker.gguf --query "what is a llama?" doc1 doc2 # one score per document
//
// Output: {"model": ..., "pooling": ..., "data": [{"index": 0, "embedding": [...]}, ...]}
// (OpenAI's embeddings layout) or, with -query, {"results": [{"index": 0, "score": ...}]}.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"

	"github.com/llamago/llamago/examples/internal/cli"
	"github.com/llamago/llamago/llama"
	"github.com/llamago/llamago/llama/gguf"
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
	f := cli.New("embed", "Prints embeddings of texts, or reranking scores of documents, as JSON (llama-embedding's flags).")
	f.Register(cli.Model, cli.Context)
	var (
		file, query, pooling string
		normalize            = true
		nSeq                 = 8
	)
	g := f.Group("embeddings")
	g.String(&file, "-f, --file", "FNAME", "read texts from this file, one per line (- = stdin)")
	g.String(&query, "--query", "TEXT", "rerank the texts as documents for this query (needs a reranker)")
	g.String(&pooling, "--pooling", "{none,mean,cls,last,rank}", "pooling (default: the model's); none gives one vector per token")
	g.Bool(&normalize, "--normalize", "L2-normalise embeddings")
	g.Int(&nSeq, "-np, --parallel", "texts per decode (sequences)")
	if err := f.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		os.Exit(2)
	}
	if f.Model == "" && f.HFRepo == "" && f.ModelURL == "" {
		f.PrintHelp(os.Stderr)
		return fmt.Errorf("-m is required (an embedding model or a reranker; or -hf user/repo)")
	}
	texts := f.Args()
	if file != "" {
		more, err := readLines(file)
		if err != nil {
			return err
		}
		texts = append(texts, more...)
	}
	if len(texts) == 0 {
		return fmt.Errorf("no texts: pass them as arguments or with -f")
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
	pool, err := llama.ParsePoolingType(pooling)
	if err != nil {
		return err
	}
	if query != "" && pool == llama.PoolingDefault {
		pool = llama.PoolingRank
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	path, err := f.ModelPath(ctx, gguf.TypeF16)
	if err != nil {
		return err
	}
	m, err := llama.LoadModel(ctx, path, mp)
	if err != nil {
		return err
	}
	defer m.Close()
	// Each text is decoded whole: the batch bounds the longest text.
	cp.Embeddings, cp.Pooling, cp.NSeqMax, cp.KVUnified = true, pool, nSeq, true
	cp.NCtx, cp.NUBatch = cp.NBatch, cp.NBatch
	c, err := m.NewContext(cp)
	if err != nil {
		return err
	}
	defer c.Close()

	enc := json.NewEncoder(os.Stdout)
	if query != "" {
		scores, err := c.Rerank(ctx, query, texts)
		if err != nil {
			return err
		}
		res := make([]score, len(scores))
		for i, s := range scores {
			res[i] = score{Index: i, Score: s, Document: texts[i]}
		}
		return enc.Encode(map[string]any{"model": m.Info().Name, "query": query, "results": res})
	}
	opts := &llama.EmbedParams{Normalize: normalize}
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
