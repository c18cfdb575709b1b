package main

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"sync"

	"github.com/llamago/llamago/llama"
)

// embedder is a context that computes embeddings or rerank scores, one request at a
// time: of the chat model, or of the -embedding-model.
type embedder struct {
	mu    sync.Mutex
	model *llama.Model
	ctx   *llama.Context
}

// newEmbedder makes the context with the model's own pooling (mean, CLS, last, rank);
// a model that declares none (a chat model) is mean-pooled.
func newEmbedder(m *llama.Model, nCtx int) (*embedder, error) {
	p := llama.ContextParams{NCtx: nCtx, NBatch: nCtx, NUBatch: nCtx, Embeddings: true}
	c, err := m.NewContext(&p)
	if err == nil && c.Pooling() == llama.PoolingNone {
		c.Close()
		p.Pooling = llama.PoolingMean
		c, err = m.NewContext(&p)
	}
	if err != nil {
		return nil, err
	}
	return &embedder{model: m, ctx: c}, nil
}

func (e *embedder) embed(ctx context.Context, inputs [][]llama.Token) ([][]float32, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.ctx.EmbedTokens(ctx, inputs, &llama.EmbedParams{Normalize: true})
}

func (e *embedder) rerank(ctx context.Context, query string, docs []string) ([]float32, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.ctx.Rerank(ctx, query, docs)
}

func (e *embedder) reranks() bool { return e.ctx.Pooling() == llama.PoolingRank }

func (e *embedder) Close() error { return e.ctx.Close() }

// embeddings is POST /v1/embeddings.
func (s *server) embeddings(w http.ResponseWriter, r *http.Request) error {
	if s.embedder == nil {
		return &apiError{status: http.StatusNotImplemented, Message: "embeddings are off on this server (-embeddings=false)", Type: "invalid_request_error"}
	}
	if s.embedder.reranks() {
		return badRequest("model", "the embedding model is a reranker: use /v1/rerank")
	}
	var req embeddingRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if req.EncodingFormat != "" && req.EncodingFormat != "float" && req.EncodingFormat != "base64" {
		return badRequest("encoding_format", "encoding_format must be float or base64")
	}
	if req.Dimensions != nil {
		return badRequest("dimensions", "dimensions is not supported: the model's embedding size is fixed")
	}
	inputs, err := s.embeddingInputs(req.Input)
	if err != nil {
		return err
	}
	vecs, err := s.embedder.embed(r.Context(), inputs)
	if err != nil {
		return err
	}
	out := embeddingList{Object: "list", Model: s.primary.id}
	for i, v := range vecs {
		var e any = v
		if req.EncodingFormat == "base64" {
			b := make([]byte, 4*len(v))
			for j, f := range v {
				binary.LittleEndian.PutUint32(b[4*j:], math.Float32bits(f))
			}
			e = base64.StdEncoding.EncodeToString(b)
		}
		out.Data = append(out.Data, embedding{Object: "embedding", Index: i, Embedding: e})
		out.Usage.PromptTokens += len(inputs[i])
	}
	out.Usage.TotalTokens = out.Usage.PromptTokens
	writeJSON(w, http.StatusOK, out)
	return nil
}

// embeddingInputs reads "input": a string, strings, token ids or lists of token ids.
func (s *server) embeddingInputs(raw json.RawMessage) ([][]llama.Token, error) {
	const maxInputs = 2048 // as OpenAI
	var texts []string
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		texts = []string{one}
	} else if err := json.Unmarshal(raw, &texts); err != nil {
		var ids [][]llama.Token
		if err := json.Unmarshal(raw, &ids); err != nil {
			var flat []llama.Token
			if err := json.Unmarshal(raw, &flat); err != nil {
				return nil, badRequest("input", "input must be a string, a list of strings, or token ids")
			}
			ids = [][]llama.Token{flat}
		}
		texts = nil
		for _, in := range ids {
			if len(in) == 0 {
				return nil, badRequest("input", "input must not contain empty token lists")
			}
			for _, t := range in {
				if !s.embedder.model.ValidToken(t) {
					return nil, badRequest("input", "input holds a token id outside the vocabulary")
				}
			}
		}
		if len(ids) == 0 || len(ids) > maxInputs {
			return nil, badRequest("input", "input must hold 1 to 2048 items")
		}
		return ids, nil
	}
	if len(texts) == 0 || len(texts) > maxInputs {
		return nil, badRequest("input", "input must hold 1 to 2048 items")
	}
	var out [][]llama.Token
	for _, t := range texts {
		if t == "" {
			return nil, badRequest("input", "input must not contain empty strings")
		}
		toks, err := s.embedder.model.Tokenize(t, llama.AddSpecial)
		if err != nil {
			return nil, err
		}
		out = append(out, toks)
	}
	return out, nil
}

// rerank is POST /v1/rerank (and /rerank), as llama-server, Jina and Cohere have it:
// {"query", "documents": [text or {"text"}], "top_n", "return_documents"} →
// {"results": [{"index", "relevance_score", "document"}]}, most relevant first. It needs
// a reranking model (-embedding-model).
func (s *server) rerank(w http.ResponseWriter, r *http.Request) error {
	if s.embedder == nil || !s.embedder.reranks() {
		return &apiError{status: http.StatusNotImplemented, Message: "reranking needs a reranking model: start the server with -embedding-model", Type: "invalid_request_error"}
	}
	var req struct {
		Model           string            `json:"model"`
		Query           string            `json:"query"`
		Documents       []json.RawMessage `json:"documents"`
		TopN            *int              `json:"top_n"`
		ReturnDocuments bool              `json:"return_documents"`
	}
	if err := decode(r, &req); err != nil {
		return err
	}
	if req.Query == "" {
		return badRequest("query", "query must not be empty")
	}
	if len(req.Documents) == 0 || len(req.Documents) > 2048 {
		return badRequest("documents", "documents must hold 1 to 2048 items")
	}
	docs := make([]string, len(req.Documents))
	for i, raw := range req.Documents {
		var obj struct {
			Text string `json:"text"`
		}
		if json.Unmarshal(raw, &docs[i]) != nil && (json.Unmarshal(raw, &obj) != nil || obj.Text == "") {
			return badRequest("documents", fmt.Sprintf("document %d: want a string or {\"text\": ...}", i))
		}
		if docs[i] == "" {
			docs[i] = obj.Text
		}
		if docs[i] == "" {
			return badRequest("documents", fmt.Sprintf("document %d is empty", i))
		}
	}
	top := len(docs)
	if req.TopN != nil {
		if *req.TopN < 1 {
			return badRequest("top_n", "top_n must be at least 1")
		}
		top = min(top, *req.TopN)
	}
	scores, err := s.embedder.rerank(r.Context(), req.Query, docs)
	if err != nil {
		return err
	}
	type result struct {
		Index          int            `json:"index"`
		RelevanceScore float32        `json:"relevance_score"`
		Document       map[string]any `json:"document,omitempty"`
	}
	results := make([]result, len(docs))
	tokens := 0
	for i, sc := range scores {
		results[i] = result{Index: i, RelevanceScore: sc}
		if req.ReturnDocuments {
			results[i].Document = map[string]any{"text": docs[i]}
		}
		if toks, err := s.embedder.model.RerankTokens(req.Query, docs[i]); err == nil {
			tokens += len(toks)
		}
	}
	slices.SortStableFunc(results, func(a, b result) int { return cmp.Compare(b.RelevanceScore, a.RelevanceScore) })
	writeJSON(w, http.StatusOK, map[string]any{
		"object": "list", "model": s.embeddingName, "results": results[:top],
		"usage": map[string]int{"prompt_tokens": tokens, "total_tokens": tokens},
	})
	return nil
}
