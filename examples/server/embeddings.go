package main

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"math"
	"net/http"
	"sync"

	"github.com/llamago/llamago/llama"
)

// embedder is a context of the model that computes embeddings, one request at a time.
type embedder struct {
	mu  sync.Mutex
	ctx *llama.Context
}

func newEmbedder(m *llama.Model, nCtx int) (*embedder, error) {
	c, err := m.NewContext(&llama.ContextParams{NCtx: nCtx, NBatch: nCtx, NUBatch: nCtx, Embeddings: true, Pooling: llama.PoolingMean})
	if err != nil {
		return nil, err
	}
	return &embedder{ctx: c}, nil
}

func (e *embedder) embed(ctx context.Context, inputs [][]llama.Token) ([][]float32, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.ctx.EmbedTokens(ctx, inputs, &llama.EmbedOptions{Normalize: true})
}

func (e *embedder) Close() error { return e.ctx.Close() }

// embeddings is POST /v1/embeddings.
func (s *server) embeddings(w http.ResponseWriter, r *http.Request) error {
	if s.embedder == nil {
		return &apiError{status: http.StatusNotImplemented, Message: "embeddings are off on this server (-embeddings=false)", Type: "invalid_request_error"}
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
	out := embeddingList{Object: "list", Model: s.name}
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
				if !s.model.ValidToken(t) {
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
		toks, err := s.model.Tokenize(t, llama.AddSpecial)
		if err != nil {
			return nil, err
		}
		out = append(out, toks)
	}
	return out, nil
}
