package main

import (
	"errors"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/llamago/llamago/llama"
)

// POST /tokenize, as llama-server has it: {"content": "...", "add_special": false,
// "parse_special": true, "with_pieces": false} → {"tokens": [ids]}, or with pieces
// [{"id": 1, "piece": "text"}] (a piece that is not valid UTF-8 comes as its bytes).
func (s *server) tokenize(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Content      *string `json:"content"`
		AddSpecial   bool    `json:"add_special"`
		ParseSpecial *bool   `json:"parse_special"`
		WithPieces   bool    `json:"with_pieces"`
	}
	if err := decode(r, &req); err != nil {
		return err
	}
	if req.Content == nil {
		return badRequest("content", "content is required")
	}
	var flags llama.TokenizeFlags
	if req.AddSpecial {
		flags |= llama.AddSpecial
	}
	if req.ParseSpecial == nil || *req.ParseSpecial {
		flags |= llama.ParseSpecial
	}
	toks, err := s.primary.model.Tokenize(*req.Content, flags)
	if err != nil {
		return tokenError("content", err)
	}
	if !req.WithPieces {
		writeJSON(w, http.StatusOK, map[string]any{"tokens": toks})
		return nil
	}
	type piece struct {
		ID    llama.Token `json:"id"`
		Piece any         `json:"piece"`
	}
	out := make([]piece, len(toks))
	for i, t := range toks {
		b, err := s.primary.model.TokenPiece(t, true)
		if err != nil {
			return err
		}
		out[i] = piece{ID: t, Piece: string(b)}
		if !utf8.Valid(b) {
			out[i].Piece = bytesOf(b)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"tokens": out})
	return nil
}

// POST /detokenize: {"tokens": [ids]} → {"content": "..."}.
func (s *server) detokenize(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Tokens []llama.Token `json:"tokens"`
	}
	if err := decode(r, &req); err != nil {
		return err
	}
	text, err := s.primary.model.Detokenize(req.Tokens, llama.RenderSpecial)
	if err != nil {
		return tokenError("tokens", err)
	}
	writeJSON(w, http.StatusOK, map[string]string{"content": strings.ToValidUTF8(text, "\uFFFD")})
	return nil
}

// tokenError makes bad text or token ids a 400 naming param.
func tokenError(param string, err error) error {
	if errors.Is(err, llama.ErrInvalidToken) || errors.Is(err, llama.ErrInvalidUTF8) {
		return badRequest(param, err.Error())
	}
	return err
}

func bytesOf(b []byte) []int {
	out := make([]int, len(b))
	for i, c := range b {
		out[i] = int(c)
	}
	return out
}

// GET /props, as llama-server has it: the server's settings a client may adapt to.
func (s *server) props(w http.ResponseWriter, _ *http.Request) error {
	d := llama.DefaultSamplingParams()
	writeJSON(w, http.StatusOK, map[string]any{
		"model_alias":   s.primary.id,
		"model_path":    s.primary.model.Path(),
		"total_slots":   s.primary.engine.Slots(),
		"chat_template": s.primary.template.Source(),
		"build_info":    llama.Version(),
		"modalities":    map[string]bool{"vision": false, "audio": false},
		"default_generation_settings": map[string]any{
			"n_ctx": s.primary.engine.NCtx(),
			"params": map[string]any{
				"temperature": d.Temperature, "top_k": d.TopK, "top_p": d.TopP, "min_p": d.MinP,
				"repeat_penalty": d.RepeatPenalty, "seed": d.Seed,
			},
		},
	})
	return nil
}
