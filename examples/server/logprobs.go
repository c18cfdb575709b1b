package main

import (
	"encoding/json"

	"github.com/llamago/llamago/llama"
)

// logprobsAsked reads the request's logprob fields: for chat, "logprobs" is a bool and
// "top_logprobs" 0 to 20 alternatives; for completions (legacy), "logprobs" is the number
// of alternatives, 0 to 5.
func (f *samplingFields) logprobsAsked(chat bool) (on bool, top int, err error) {
	raw := string(f.Logprobs)
	if chat {
		if raw != "" && raw != "null" {
			if err := json.Unmarshal(f.Logprobs, &on); err != nil {
				return false, 0, badRequest("logprobs", "logprobs must be true or false")
			}
		}
		if f.TopLogprobs != nil {
			top = *f.TopLogprobs
			if top < 0 || top > 20 {
				return false, 0, badRequest("top_logprobs", "top_logprobs must be in [0, 20]")
			}
			if top > 0 && !on {
				return false, 0, badRequest("top_logprobs", "top_logprobs needs logprobs: true")
			}
		}
		return on, top, nil
	}
	if f.TopLogprobs != nil {
		return false, 0, badRequest("top_logprobs", "completions take logprobs: N (top_logprobs is the chat API's)")
	}
	if raw == "" || raw == "null" {
		return false, 0, nil
	}
	if err := json.Unmarshal(f.Logprobs, &top); err != nil || top < 0 || top > 5 {
		return false, 0, badRequest("logprobs", "logprobs must be an integer in [0, 5]")
	}
	return true, top, nil
}

// chatLogprobs is a chat choice's "logprobs": one entry per token.
type chatLogprobs struct {
	Content []tokenLogprob `json:"content"`
	Refusal []tokenLogprob `json:"refusal"`
}

type tokenLogprob struct {
	Token       string         `json:"token"`
	Logprob     float32        `json:"logprob"`
	Bytes       []int          `json:"bytes"`
	TopLogprobs []tokenLogprob `json:"top_logprobs,omitempty"`
}

// chatLogprobsOf renders generated tokens in the chat API's shape.
func (m *served) chatLogprobsOf(gs []llama.Generated) *chatLogprobs {
	out := &chatLogprobs{Content: make([]tokenLogprob, len(gs)), Refusal: nil}
	for i, g := range gs {
		out.Content[i] = m.tokenLogprob(g.Token, g.Logprob)
		out.Content[i].TopLogprobs = make([]tokenLogprob, len(g.Top))
		for k, t := range g.Top {
			out.Content[i].TopLogprobs[k] = m.tokenLogprob(t.Token, t.Logprob)
		}
	}
	return out
}

func (m *served) tokenLogprob(t llama.Token, lp float32) tokenLogprob {
	piece, _ := m.model.TokenPiece(t, true)
	return tokenLogprob{Token: string(piece), Logprob: lp, Bytes: bytesOf(piece)}
}

// completionLogprobs is a text completion choice's "logprobs" (the legacy shape).
type completionLogprobs struct {
	Tokens        []string             `json:"tokens"`
	TokenLogprobs []float32            `json:"token_logprobs"`
	TopLogprobs   []map[string]float32 `json:"top_logprobs"`
	TextOffset    []int                `json:"text_offset"`
}

// completionLogprobsOf renders generated tokens in the completions API's shape; offset is
// where the first token's text starts in the choice's text, next where the text after
// the last one starts.
func (m *served) completionLogprobsOf(gs []llama.Generated, offset int) (lp *completionLogprobs, next int) {
	out := &completionLogprobs{Tokens: []string{}, TokenLogprobs: []float32{}, TopLogprobs: []map[string]float32{}, TextOffset: []int{}}
	for _, g := range gs {
		piece, _ := m.model.TokenPiece(g.Token, true)
		out.Tokens = append(out.Tokens, string(piece))
		out.TokenLogprobs = append(out.TokenLogprobs, g.Logprob)
		top := make(map[string]float32, len(g.Top))
		for _, t := range g.Top {
			p, _ := m.model.TokenPiece(t.Token, true)
			if _, dup := top[string(p)]; !dup { // two tokens with one text: the likelier
				top[string(p)] = t.Logprob
			}
		}
		out.TopLogprobs = append(out.TopLogprobs, top)
		out.TextOffset = append(out.TextOffset, offset)
		offset += len(piece)
	}
	return out, offset
}
