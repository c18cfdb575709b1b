package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/llamago/llamago/internal/llamacpp"
	"github.com/llamago/llamago/internal/testmodel"
	"github.com/llamago/llamago/llama"
	"github.com/llamago/llamago/llama/gguf"
)

// tool_choice naming one function offers the template that function alone, with a call
// required: the grammar (here of Qwen2.5's template, from llama.cpp's tree) admits calls
// of it and of no other; an unknown name is a 400.
func TestForcedToolChoice(t *testing.T) {
	var req chatCompletionRequest
	require.NoError(t, json.Unmarshal([]byte(`{"messages": [{"role": "user", "content": "Time in Paris?"}],
		"tools": [
			{"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
			{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"enum": ["Paris", "Rome"]}}}}}],
		"tool_choice": {"type": "function", "function": {"name": "get_weather"}}}`), &req))
	cr, err := req.chatRequest([]llama.Message{req.Messages[0].Message})
	require.NoError(t, err)
	require.Len(t, cr.Tools, 1)
	assert.Equal(t, "get_weather", cr.Tools[0].Name)
	assert.Equal(t, llama.ToolChoiceRequired, cr.ToolChoice)

	m, err := llama.LoadModel(t.Context(), testmodel.Path(t, "qwen2-tiny", gguf.TypeQ8_0), &llama.ModelParams{GPULayers: 0})
	require.NoError(t, err)
	defer m.Close()
	dir, err := llamacpp.Dir()
	require.NoError(t, err)
	src, err := os.ReadFile(filepath.Join(dir, "models", "templates", "Qwen-Qwen2.5-7B-Instruct.jinja"))
	require.NoError(t, err)
	tmpl, err := llama.NewChatTemplate(m, &llama.ChatTemplateParams{Source: string(src)})
	require.NoError(t, err)
	defer tmpl.Close()
	p, err := tmpl.Apply(cr)
	require.NoError(t, err)
	assert.False(t, p.GrammarLazy, "the call is required")
	assert.Contains(t, p.Grammar, `"get_weather"`)
	assert.Contains(t, p.Grammar, `"\"Paris\"" | "\"Rome\""`, "its arguments follow its schema")
	assert.NotContains(t, p.Grammar, "get_time")

	for _, choice := range []string{`{"type": "function", "function": {"name": "nope"}}`, `{"type": "function"}`, `"sometimes"`, `7`} {
		req.ToolChoice = json.RawMessage(choice)
		_, err := req.chatRequest(nil)
		var ae *apiError
		require.ErrorAs(t, err, &ae, choice)
		assert.Equal(t, 400, ae.status, choice)
	}
}

// llama-server's /tokenize, /detokenize and /props.
func TestTokenizeDetokenizeProps(t *testing.T) {
	s := startServer(t)
	var tok struct{ Tokens []int }
	require.Equal(t, http.StatusOK, s.call(t, http.MethodPost, "/tokenize", map[string]any{"content": "Hello world<|im_end|>"}, &tok))
	require.NotEmpty(t, tok.Tokens)
	var plain struct{ Tokens []int }
	s.call(t, http.MethodPost, "/tokenize", map[string]any{"content": "Hello world<|im_end|>", "parse_special": false}, &plain)
	assert.Greater(t, len(plain.Tokens), len(tok.Tokens), "without parse_special the marker is text")

	var pieces struct {
		Tokens []struct {
			ID    int
			Piece any
		}
	}
	s.call(t, http.MethodPost, "/tokenize", map[string]any{"content": "Hello world", "with_pieces": true}, &pieces)
	var joined strings.Builder
	for _, p := range pieces.Tokens {
		joined.WriteString(p.Piece.(string))
	}
	assert.Equal(t, "Hello world", joined.String())

	var detok struct{ Content string }
	require.Equal(t, http.StatusOK, s.call(t, http.MethodPost, "/detokenize", map[string]any{"tokens": tok.Tokens}, &detok))
	assert.Equal(t, "Hello world<|im_end|>", detok.Content)

	var bad apiErrBody
	assert.Equal(t, http.StatusBadRequest, s.call(t, http.MethodPost, "/detokenize", map[string]any{"tokens": []int{-1}}, &bad))
	assert.Equal(t, "tokens", bad.Error.Param)
	assert.Equal(t, http.StatusBadRequest, s.call(t, http.MethodPost, "/tokenize", map[string]any{}, &bad))
	assert.Equal(t, http.StatusBadRequest, s.call(t, http.MethodPost, "/detokenize", map[string]any{"tokens": "x"}, &bad))

	var props struct {
		TotalSlots                int    `json:"total_slots"`
		ChatTemplate              string `json:"chat_template"`
		ModelAlias                string `json:"model_alias"`
		DefaultGenerationSettings struct {
			NCtx int `json:"n_ctx"`
		} `json:"default_generation_settings"`
	}
	require.Equal(t, http.StatusOK, s.call(t, http.MethodGet, "/props", nil, &props))
	assert.Equal(t, 4, props.TotalSlots)
	assert.Contains(t, props.ChatTemplate, "<|im_start|>")
	assert.Equal(t, 4096, props.DefaultGenerationSettings.NCtx)
	assert.NotEmpty(t, props.ModelAlias)
}

type apiErrBody struct {
	Error struct {
		Message string
		Param   string
	}
}

// CORS is off unless -cors-origins names origins; then a browser's preflight is answered
// without the API key, for the openai package's own headers too, and only for those origins.
func TestCORS(t *testing.T) {
	preflight := func(s *runningServer, origin string) *http.Response {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodOptions, s.url+"/v1/chat/completions", nil)
		require.NoError(t, err)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "authorization,content-type,x-stainless-os")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp
	}
	off := startServer(t)
	assert.Empty(t, preflight(off, "http://app.example").Header.Get("Access-Control-Allow-Origin"))

	s := startServer(t, "-cors-origins", "http://app.example, http://other.example")
	resp := preflight(s, "http://app.example")
	assert.Less(t, resp.StatusCode, 300)
	assert.Equal(t, "http://app.example", resp.Header.Get("Access-Control-Allow-Origin"))
	assert.Contains(t, strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers")), "x-stainless-os")
	assert.Contains(t, resp.Header.Get("Access-Control-Allow-Methods"), "POST")
	assert.Empty(t, preflight(s, "http://evil.example").Header.Get("Access-Control-Allow-Origin"))

	// The request itself still needs the key, and its answer carries the origin.
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, s.url+"/v1/models", nil)
	require.NoError(t, err)
	req.Header.Set("Origin", "http://other.example")
	req.Header.Set("Authorization", "Bearer "+testKey)
	got, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	got.Body.Close()
	assert.Equal(t, http.StatusOK, got.StatusCode)
	assert.Equal(t, "http://other.example", got.Header.Get("Access-Control-Allow-Origin"))
}

// The unknown-field policy: a field no endpoint knows is a 400 naming it (as OpenAI
// answers); OpenAI's fields that change nothing here are accepted; asked-for features
// that are not implemented (n > 1, suffix) or malformed ones are refused, not dropped.
func TestUnknownFieldPolicy(t *testing.T) {
	s := startServer(t)
	chat := func(extra string) (int, apiErrBody) {
		var body map[string]any
		require.NoError(t, json.Unmarshal([]byte(`{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2`+extra+`}`), &body))
		var e apiErrBody
		return s.call(t, http.MethodPost, "/v1/chat/completions", body, &e), e
	}
	status, e := chat(`, "max_token": 5`)
	assert.Equal(t, http.StatusBadRequest, status)
	assert.Equal(t, "max_token", e.Error.Param)
	assert.Contains(t, e.Error.Message, "unrecognized request argument supplied: max_token")

	status, _ = chat(`, "user": "u1", "store": false, "metadata": {"k": "v"}, "service_tier": "auto", "logprobs": false, "top_logprobs": 0`)
	assert.Equal(t, http.StatusOK, status, "ignored by policy")

	for field, extra := range map[string]string{"logprobs": `, "logprobs": 2`, "top_logprobs": `, "top_logprobs": 3`, "n": `, "n": 2`} {
		status, e := chat(extra)
		assert.Equal(t, http.StatusBadRequest, status, field)
		assert.Equal(t, field, e.Error.Param)
	}

	var ce apiErrBody
	assert.Equal(t, http.StatusBadRequest, s.call(t, http.MethodPost, "/v1/completions", map[string]any{"prompt": "a", "suffix": "b"}, &ce))
	assert.Equal(t, "suffix", ce.Error.Param)
	assert.Equal(t, http.StatusBadRequest, s.call(t, http.MethodPost, "/v1/embeddings", map[string]any{"input": "a", "inputs": "b"}, &ce))
	assert.Equal(t, "inputs", ce.Error.Param)
}

// logprobs and top_logprobs (chat) and logprobs: N (completions), streamed and not, in
// OpenAI's shapes, through the openai client; absent when not asked.
func TestLogprobsOpenAI(t *testing.T) {
	s := startServer(t)
	type entry struct {
		Token       string
		Logprob     float64
		Bytes       []int
		TopLogprobs []entry `json:"top_logprobs"`
	}
	var r struct {
		Chat struct {
			Content []entry
		}
		ChatTokens    int
		ChatText      string
		Streamed      []entry
		PlainLogprobs *json.RawMessage
		Comp          struct {
			Tokens        []string
			TokenLogprobs []float64            `json:"token_logprobs"`
			TopLogprobs   []map[string]float64 `json:"top_logprobs"`
			TextOffset    []int                `json:"text_offset"`
		}
		CompText     string
		CompStreamed []struct {
			Tokens     []string
			TextOffset []int `json:"text_offset"`
		}
	}
	s.client(t, "logprobs", &r)
	require.Len(t, r.Chat.Content, r.ChatTokens, "one entry per generated token")
	var text []byte
	for i, e := range r.Chat.Content {
		require.Len(t, e.TopLogprobs, 2, "token %d", i)
		assert.Equal(t, e.TopLogprobs[0].Token, e.Token, "greedy: the most likely token")
		assert.InDelta(t, e.TopLogprobs[0].Logprob, e.Logprob, 1e-6)
		assert.LessOrEqual(t, e.TopLogprobs[1].Logprob, e.TopLogprobs[0].Logprob)
		assert.LessOrEqual(t, e.Logprob, 0.0)
		for _, b := range e.Bytes {
			text = append(text, byte(b))
		}
	}
	assert.Equal(t, r.ChatText, string(text), "the tokens' bytes are the reply")
	require.Len(t, r.Streamed, len(r.Chat.Content), "streamed: the same entries")
	for i := range r.Streamed {
		assert.Equal(t, r.Chat.Content[i].Token, r.Streamed[i].Token)
		assert.InDelta(t, r.Chat.Content[i].Logprob, r.Streamed[i].Logprob, 1e-4)
	}
	assert.Nil(t, r.PlainLogprobs, "not asked: null")

	require.NotEmpty(t, r.Comp.Tokens)
	assert.Len(t, r.Comp.TokenLogprobs, len(r.Comp.Tokens))
	assert.Len(t, r.Comp.TopLogprobs, len(r.Comp.Tokens))
	assert.Equal(t, r.CompText, strings.Join(r.Comp.Tokens, ""))
	for i, off := range r.Comp.TextOffset {
		assert.True(t, strings.HasPrefix(r.CompText[off:], r.Comp.Tokens[i]), "offset %d", i)
		assert.LessOrEqual(t, len(r.Comp.TopLogprobs[i]), 2)
	}
	var streamed []string
	for _, c := range r.CompStreamed {
		streamed = append(streamed, c.Tokens...)
	}
	assert.Equal(t, r.Comp.Tokens, streamed)
}

// -embedding-model: a reranker serves /v1/rerank (and /rerank) with the scores that
// llama's Rerank gives for the same model, most relevant first; /v1/embeddings then
// refuses, and a server without a reranker answers 501. An embedding model serves
// /v1/embeddings with its own size.
func TestRerankAndEmbeddingModel(t *testing.T) {
	reranker := testmodel.Path(t, "bert-rerank-tiny", gguf.TypeF16)
	s := startServer(t, "-embedding-model", reranker)
	docs := []string{"a llama is an animal", "the sky is blue", "llamas live in the Andes"}
	var r struct {
		Results []struct {
			Index          int
			RelevanceScore float32 `json:"relevance_score"`
			Document       struct{ Text string }
		}
		Usage struct {
			PromptTokens int `json:"prompt_tokens"`
		}
	}
	require.Equal(t, http.StatusOK, s.call(t, http.MethodPost, "/v1/rerank",
		map[string]any{"query": "what is a llama?", "documents": []any{docs[0], map[string]string{"text": docs[1]}, docs[2]}, "top_n": 2, "return_documents": true}, &r))
	require.Len(t, r.Results, 2)
	assert.Positive(t, r.Usage.PromptTokens)

	m, err := llama.LoadModel(t.Context(), reranker, &llama.ModelParams{GPULayers: 0})
	require.NoError(t, err)
	defer m.Close()
	c, err := m.NewContext(&llama.ContextParams{Embeddings: true, NCtx: 512, NBatch: 512, NUBatch: 512})
	require.NoError(t, err)
	defer c.Close()
	want, err := c.Rerank(t.Context(), "what is a llama?", docs)
	require.NoError(t, err)
	best := 0
	for i := range want {
		if want[i] > want[best] {
			best = i
		}
	}
	assert.Equal(t, best, r.Results[0].Index, "most relevant first")
	assert.GreaterOrEqual(t, r.Results[0].RelevanceScore, r.Results[1].RelevanceScore)
	for _, res := range r.Results {
		assert.InDelta(t, want[res.Index], res.RelevanceScore, 1e-3)
		assert.Equal(t, docs[res.Index], res.Document.Text)
	}
	var same struct{ Results []struct{ Index int } }
	require.Equal(t, http.StatusOK, s.call(t, http.MethodPost, "/rerank", map[string]any{"query": "what is a llama?", "documents": docs}, &same))
	assert.Len(t, same.Results, 3)

	var e apiErrBody
	assert.Equal(t, http.StatusBadRequest, s.call(t, http.MethodPost, "/v1/embeddings", map[string]any{"input": "x"}, &e))
	assert.Equal(t, http.StatusBadRequest, s.call(t, http.MethodPost, "/v1/rerank", map[string]any{"query": "q", "documents": []string{}}, &e))
	assert.Equal(t, http.StatusBadRequest, s.call(t, http.MethodPost, "/v1/rerank", map[string]any{"query": "", "documents": docs}, &e))

	plain := startServer(t)
	assert.Equal(t, http.StatusNotImplemented, plain.call(t, http.MethodPost, "/v1/rerank", map[string]any{"query": "q", "documents": docs}, &e))

	// An embedding model: its own pooling (the BERT shape declares it), the vector the
	// library gives for it.
	bert := testmodel.Path(t, "bert-tiny", gguf.TypeF16)
	emb := startServer(t, "-embedding-model", bert)
	var got struct {
		Data []struct{ Embedding []float32 }
	}
	require.Equal(t, http.StatusOK, emb.call(t, http.MethodPost, "/v1/embeddings", map[string]any{"input": "a llama", "encoding_format": "float"}, &got))
	require.Len(t, got.Data, 1)
	bm, err := llama.LoadModel(t.Context(), bert, &llama.ModelParams{GPULayers: 0})
	require.NoError(t, err)
	defer bm.Close()
	bc, err := bm.NewContext(&llama.ContextParams{Embeddings: true, NCtx: 512, NBatch: 512, NUBatch: 512})
	require.NoError(t, err)
	defer bc.Close()
	assert.NotEqual(t, llama.PoolingNone, bc.Pooling(), "the model's own pooling")
	vecs, err := bc.Embed(t.Context(), []string{"a llama"}, &llama.EmbedParams{Normalize: true})
	require.NoError(t, err)
	require.Len(t, got.Data[0].Embedding, len(vecs[0]))
	for i := range vecs[0] {
		assert.InDelta(t, vecs[0][i], got.Data[0].Embedding[i], 1e-4)
	}
}

// The port opens before the model is loaded: meanwhile every request, /health included,
// gets 503 "loading model" as from llama-server. The model file here is a FIFO, so the
// load waits until the test writes it; what it writes is no model, and the server
// exits with the error.
func TestHealthWhileLoading(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "model.gguf")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	s := launchServer(t, false, "-model", fifo)
	for _, path := range []string{"/health", "/v1/models"} {
		var e apiErrBody
		assert.Equal(t, http.StatusServiceUnavailable, s.call(t, http.MethodGet, path, nil, &e), path)
		assert.Equal(t, "loading model", e.Error.Message)
	}
	w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	require.NoError(t, err)
	w.WriteString("not a model")
	w.Close()
	select {
	case <-s.exited:
		assert.Error(t, s.waitErr, "a model that cannot load ends the server")
		assert.Contains(t, s.stderr.String(), "level=ERROR")
	case <-time.After(time.Minute):
		t.Fatal("the server did not exit")
	}
}
