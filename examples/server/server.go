package main

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/cors"

	"github.com/llamago/llamago/examples/internal/adapterflags"
	"github.com/llamago/llamago/llama"
	"github.com/llamago/llamago/llama/engine"
)

// server is the OpenAI-compatible HTTP API over its models: the first one, always
// loaded, with every feature (slots, adapters, drafts, embeddings), and the pool of the
// others, for chat and completions.
type server struct {
	primary       served
	pool          *pool         // nil: one model
	embedder      *embedder     // nil: /v1/embeddings is off
	embeddingName string        // the model id of embeddings and rerank answers
	slotDir       string        // -slot-save-path; "": /slots actions are off
	fetch         *mediaFetcher // --media-urls; nil: remote images are refused
	adapters      *adapterflags.Adapters
	apiKey        string
	cors          []string // origins allowed to call from a browser; none: no CORS headers
	maxBody       int64
	timeout       time.Duration // per request, generation included
	log           *slog.Logger
	created       int64

	inflight sync.WaitGroup // handlers running, for shutdown
	stopping atomic.Bool
}

func (s *server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", s.health)
	mux.Handle("GET /metrics", s.auth(newMetricsHandler(s.primary.engine)))
	mux.Handle("GET /v1/models", s.auth(http.HandlerFunc(s.models)))
	mux.Handle("GET /v1/models/{id...}", s.auth(http.HandlerFunc(s.models)))
	mux.Handle("POST /v1/chat/completions", s.api(s.chatCompletions))
	mux.Handle("POST /v1/completions", s.api(s.completions))
	mux.Handle("POST /v1/embeddings", s.api(s.embeddings))
	mux.Handle("POST /v1/rerank", s.api(s.rerank))
	mux.Handle("POST /rerank", s.api(s.rerank))
	mux.Handle("POST /tokenize", s.api(s.tokenize))
	mux.Handle("POST /detokenize", s.api(s.detokenize))
	mux.Handle("GET /props", s.api(s.props))
	mux.Handle("GET /slots", s.api(s.slots))
	mux.Handle("POST /slots/{id}", s.api(s.slotAction))
	mux.Handle("GET /lora-adapters", s.api(s.loraAdapters))
	mux.Handle("POST /lora-adapters", s.api(s.setLoRAAdapters))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &apiError{status: http.StatusNotFound, Message: fmt.Sprintf("no route %s %s", r.Method, r.URL.Path), Type: "invalid_request_error"})
	})
	if len(s.cors) == 0 {
		return mux
	}
	// Browsers' preflight requests carry no API key: rs/cors answers them before auth.
	// The openai package sends headers of its own (x-stainless-*): any header is allowed.
	return cors.New(cors.Options{
		AllowedOrigins: s.cors,
		AllowedMethods: []string{http.MethodGet, http.MethodPost},
		AllowedHeaders: []string{"*"},
		MaxAge:         600,
	}).Handler(mux)
}

// serveLoading answers every request while the model loads, as llama-server does.
func serveLoading(w http.ResponseWriter, _ *http.Request) {
	writeError(w, &apiError{status: http.StatusServiceUnavailable, Message: "loading model", Type: "unavailable_error"})
}

// auth checks the API key, when the server has one.
func (s *server) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.apiKey != "" {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(s.apiKey)) != 1 {
				code := "invalid_api_key"
				writeError(w, &apiError{status: http.StatusUnauthorized, Message: "invalid or missing API key (Authorization: Bearer <key>)", Type: "invalid_request_error", Code: &code})
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// api wraps a JSON endpoint: authentication, the body size limit, the request timeout,
// and the error response.
func (s *server) api(h func(w http.ResponseWriter, r *http.Request) error) http.Handler {
	return s.auth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.inflight.Add(1)
		defer s.inflight.Done()
		r.Body = http.MaxBytesReader(w, r.Body, s.maxBody)
		ctx, cancel := context.WithTimeoutCause(r.Context(), s.timeout, errRequestTimeout)
		defer cancel()
		if err := h(w, r.WithContext(ctx)); err != nil {
			s.log.Info("request failed", "path", r.URL.Path, "err", err)
			writeError(w, toAPIError(err))
		}
	}))
}

var errRequestTimeout = errors.New("request timeout")

// decode reads a JSON body into v. A field v does not know is refused, as OpenAI's API
// refuses it: a misspelt parameter ("max_token") must not pass silently. The fields
// OpenAI documents that change nothing here (user, store, metadata, ...) are known and
// ignored (openai.go, policyIgnored).
func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if e, ok := errors.AsType[*apiError](err); ok { // from a field's UnmarshalJSON
			return e
		}
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return &apiError{status: http.StatusRequestEntityTooLarge, Message: err.Error(), Type: "invalid_request_error"}
		}
		if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			name = strings.Trim(name, `"`)
			return badRequest(name, fmt.Sprintf("unrecognized request argument supplied: %s", name))
		}
		return badRequest("", "invalid JSON body: "+err.Error())
	}
	return nil
}

// toAPIError maps errors to OpenAI error responses.
func toAPIError(err error) *apiError {
	if e, ok := errors.AsType[*apiError](err); ok {
		return e
	}
	if e := slotError(err); e != nil {
		return e
	}
	switch {
	case errors.Is(err, engine.ErrQueueFull):
		return &apiError{status: http.StatusTooManyRequests, Message: err.Error(), Type: "server_busy"}
	case errors.Is(err, engine.ErrClosed):
		return &apiError{status: http.StatusServiceUnavailable, Message: "the server is shutting down", Type: "server_error"}
	case errors.Is(err, errRequestTimeout):
		return &apiError{status: http.StatusGatewayTimeout, Message: "the request took longer than the server's timeout", Type: "timeout"}
	case errors.Is(err, llama.ErrInputTooLong), errors.Is(err, llama.ErrContextFull):
		code := "context_length_exceeded"
		return &apiError{status: http.StatusBadRequest, Message: err.Error(), Type: "invalid_request_error", Code: &code}
	case errors.Is(err, llama.ErrInvalidParams), errors.Is(err, llama.ErrInvalidToken), errors.Is(err, llama.ErrInvalidBatch),
		errors.Is(err, llama.ErrGrammar), errors.Is(err, llama.ErrChat), errors.Is(err, llama.ErrInvalidUTF8):
		return badRequest("", err.Error())
	}
	return &apiError{status: http.StatusInternalServerError, Message: err.Error(), Type: "server_error"}
}

func writeError(w http.ResponseWriter, e *apiError) {
	writeJSON(w, e.status, map[string]any{"error": e})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func (s *server) health(w http.ResponseWriter, _ *http.Request) {
	if s.stopping.Load() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "shutting down"})
		return
	}
	m := s.primary.engine.Metrics()
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "slots": m.Slots, "active": m.Active, "queued": m.Queued})
}

func (s *server) models(w http.ResponseWriter, r *http.Request) {
	list := []modelObject{{ID: s.primary.id, Object: "model", Created: s.created, OwnedBy: "llamago", Loaded: true}}
	if s.pool != nil {
		for _, st := range s.pool.status() {
			list = append(list, modelObject{ID: st.id, Object: "model", Created: s.created, OwnedBy: "llamago", Loaded: st.loaded})
		}
	}
	id := r.PathValue("id")
	if id == "" {
		writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": list})
		return
	}
	if i := slices.IndexFunc(list, func(m modelObject) bool { return m.ID == id }); i >= 0 {
		writeJSON(w, http.StatusOK, list[i])
		return
	}
	code := "model_not_found"
	writeError(w, &apiError{status: http.StatusNotFound, Message: fmt.Sprintf("the model %q does not exist", id), Type: "invalid_request_error", Code: &code})
}

// sse writes a server-sent event stream.
type sse struct {
	w       http.ResponseWriter
	started bool
}

func (e *sse) send(v any) error {
	if !e.started {
		h := e.w.Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Accel-Buffering", "no")
		e.w.WriteHeader(http.StatusOK)
		e.started = true
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(e.w, "data: %s\n\n", b); err != nil {
		return err
	}
	return http.NewResponseController(e.w).Flush()
}

// fail ends a stream with an error event (before any event: a plain error response).
func (e *sse) fail(err error) {
	a := toAPIError(err)
	if !e.started {
		writeError(e.w, a)
		return
	}
	e.send(map[string]any{"error": a})
}

func (e *sse) done() {
	fmt.Fprint(e.w, "data: [DONE]\n\n")
	http.NewResponseController(e.w).Flush()
}

func newID(prefix string) string {
	b := make([]byte, 12)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// generate runs a request to its end and returns its whole text, and the tokens'
// log-probabilities when it asked for them.
func (m *served) generate(ctx context.Context, req *engine.Request) (string, []llama.Generated, error) {
	var text strings.Builder
	var lps []llama.Generated
	for d, err := range m.engine.Generate(ctx, req) {
		if err != nil {
			return "", nil, err
		}
		text.WriteString(d.Text)
		lps = append(lps, d.Logprobs...)
	}
	return text.String(), lps, nil
}

func finishReason(r llama.FinishReason, toolCalls bool) string {
	switch {
	case toolCalls:
		return "tool_calls"
	case r == llama.FinishLength:
		return "length"
	}
	return "stop"
}

func usageOf(r *engine.Result) *usage {
	u := &usage{PromptTokens: r.PromptTokens, CompletionTokens: r.GeneratedTokens, TotalTokens: r.PromptTokens + r.GeneratedTokens}
	u.PromptTokensDetails = &struct {
		CachedTokens int `json:"cached_tokens"`
	}{r.CachedTokens}
	return u
}
