package main

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/llamago/llamago/llama"
	"github.com/llamago/llamago/llama/engine"
)

// completions is POST /v1/completions: plain text continuation of a prompt.
func (s *server) completions(w http.ResponseWriter, r *http.Request) error {
	var req completionRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if req.Echo {
		return badRequest("echo", "echo is not supported")
	}
	if req.Suffix != nil && *req.Suffix != "" {
		return badRequest("suffix", "suffix is not supported")
	}
	if req.BestOf != nil && *req.BestOf != 1 {
		return badRequest("best_of", "only best_of=1 is supported")
	}
	m, done, err := s.use(r.Context(), req.Model)
	if err != nil {
		return err
	}
	defer done()
	tokens, err := m.promptTokens(req.Prompt)
	if err != nil {
		return err
	}
	sp, err := req.params(m.model)
	if err != nil {
		return err
	}
	withLogprobs, topLogprobs, err := req.logprobsAsked(false)
	if err != nil {
		return err
	}
	maxTokens, err := req.maxTokens(16) // the API's default
	if err != nil {
		return err
	}
	var res engine.Result
	ereq := &engine.Request{Prompt: tokens, Sampling: &sp, MaxTokens: maxTokens, Stop: req.Stop,
		Logprobs: withLogprobs, TopLogprobs: topLogprobs, Result: &res}
	out := completion{ID: newID("cmpl-"), Object: "text_completion", Created: time.Now().Unix(), Model: m.id, SystemFingerprint: fingerprint}
	if !req.Stream {
		text, lps, err := m.generate(r.Context(), ereq)
		if err != nil {
			return err
		}
		reason := finishReason(res.FinishReason, false)
		out.Choices = []completionChoice{{Text: text, FinishReason: &reason}}
		if withLogprobs {
			out.Choices[0].Logprobs, _ = m.completionLogprobsOf(lps, 0)
		}
		out.Usage = usageOf(&res)
		writeJSON(w, http.StatusOK, out)
		return nil
	}
	stream := &sse{w: w}
	var lps []llama.Generated // of tokens whose text no chunk carried yet
	offset := 0               // where their text starts
	withLP := func(c completionChoice) []completionChoice {
		if withLogprobs && len(lps) > 0 {
			c.Logprobs, offset = m.completionLogprobsOf(lps, offset)
			lps = lps[:0]
		}
		return []completionChoice{c}
	}
	for d, err := range m.engine.Generate(r.Context(), ereq) {
		if err != nil {
			stream.fail(err)
			return nil
		}
		lps = append(lps, d.Logprobs...)
		if d.Text == "" {
			continue
		}
		out.Choices = withLP(completionChoice{Text: d.Text})
		if err := stream.send(out); err != nil {
			return nil // the client left; its context ends the generation
		}
	}
	reason := finishReason(res.FinishReason, false)
	out.Choices = withLP(completionChoice{FinishReason: &reason})
	if err := stream.send(out); err != nil {
		return nil
	}
	if req.includeUsage() {
		out.Choices = []completionChoice{}
		out.Usage = usageOf(&res)
		stream.send(out)
	}
	stream.done()
	return nil
}

// promptTokens reads "prompt": a string, a list of one string, or token ids.
func (m *served) promptTokens(raw json.RawMessage) ([]llama.Token, error) {
	var text string
	if err := json.Unmarshal(raw, &text); err == nil {
		return m.tokenizePrompt(text)
	}
	var texts []string
	if err := json.Unmarshal(raw, &texts); err == nil {
		if len(texts) != 1 {
			return nil, badRequest("prompt", "prompt must be one string (batches of prompts are not supported)")
		}
		return m.tokenizePrompt(texts[0])
	}
	var ids []llama.Token
	if err := json.Unmarshal(raw, &ids); err == nil && len(ids) > 0 {
		return ids, nil // the engine checks them
	}
	return nil, badRequest("prompt", "prompt must be a non-empty string or a list of token ids")
}

func (m *served) tokenizePrompt(text string) ([]llama.Token, error) {
	if text == "" {
		return nil, badRequest("prompt", "prompt must not be empty")
	}
	return m.model.Tokenize(text, llama.AddSpecial)
}
