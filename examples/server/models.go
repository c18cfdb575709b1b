package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/llamago/llamago/llama"
	"github.com/llamago/llamago/llama/engine"
)

// served is a model with what generates with it.
type served struct {
	id        string
	model     *llama.Model
	engine    *engine.Engine
	template  *llama.ChatTemplate
	projector *llama.Projector // --mmproj, first model only; nil: text only
}

// modelID is the id clients see for a model file: its name without .gguf.
func modelID(path string) string { return strings.TrimSuffix(filepath.Base(path), ".gguf") }

// pool holds the models besides the first (-model repeated, -models-dir): loaded when a
// request names one, unloaded least recently used first when loading another would pass
// the memory budget, never while a request uses it.
type pool struct {
	mu      sync.Mutex
	entries []*poolEntry // in the order given
	budget  int64        // bytes of model files loaded at once, the first model's included; 0: no limit
	used    int64
	ecfg    engine.Params // for each model's engine
	gpu     int
	log     *slog.Logger
}

type poolEntry struct {
	path    string
	id      string
	size    int64
	m       *served // nil: not loaded
	loading chan struct{}
	users   int
	last    time.Time
}

// newPool lists the extra models; firstSize is the size of the first model's file,
// which stays loaded.
func newPool(paths []string, budget, firstSize int64, ecfg engine.Params, gpu int, log *slog.Logger) (*pool, error) {
	p := &pool{budget: budget, used: firstSize, ecfg: ecfg, gpu: gpu, log: log}
	for _, path := range paths {
		fi, err := os.Stat(path)
		if err != nil {
			return nil, err
		}
		if fi.IsDir() {
			return nil, fmt.Errorf("%s: a directory, not a model", path)
		}
		if slices.ContainsFunc(p.entries, func(e *poolEntry) bool { return e.id == modelID(path) }) {
			return nil, fmt.Errorf("two models with the id %q", modelID(path))
		}
		p.entries = append(p.entries, &poolEntry{path: path, id: modelID(path), size: fi.Size()})
	}
	return p, nil
}

// errBudget: every loaded model serves requests and another does not fit beside them.
var errBudget = &apiError{status: http.StatusServiceUnavailable, Message: "the models that fit the memory budget are all serving requests: try again shortly", Type: "unavailable_error"}

// acquire returns the model with id, loading it (and unloading idle ones) when needed,
// and the release to call when the request is done with it; ok is false for an unknown id.
func (p *pool) acquire(ctx context.Context, id string) (m *served, release func(), ok bool, err error) {
	p.mu.Lock()
	i := slices.IndexFunc(p.entries, func(e *poolEntry) bool { return e.id == id })
	if i < 0 {
		p.mu.Unlock()
		return nil, nil, false, nil
	}
	e := p.entries[i]
	for e.loading != nil { // another request loads it
		wait := e.loading
		p.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, nil, true, context.Cause(ctx)
		}
		p.mu.Lock()
	}
	if e.m == nil {
		if err := p.makeRoom(e.size); err != nil {
			p.mu.Unlock()
			return nil, nil, true, err
		}
		e.loading = make(chan struct{})
		p.used += e.size
		p.mu.Unlock()
		loaded, err := p.load(ctx, e)
		p.mu.Lock()
		close(e.loading)
		e.loading = nil
		if err != nil {
			p.used -= e.size
			p.mu.Unlock()
			return nil, nil, true, err
		}
		e.m = loaded
	}
	e.users++
	e.last = time.Now()
	p.mu.Unlock()
	return e.m, func() {
		p.mu.Lock()
		e.users--
		e.last = time.Now()
		p.mu.Unlock()
	}, true, nil
}

// makeRoom unloads idle models, least recently used first, until size more bytes fit.
func (p *pool) makeRoom(size int64) error {
	for p.budget > 0 && p.used+size > p.budget {
		var victim *poolEntry
		for _, e := range p.entries {
			if e.m != nil && e.users == 0 && e.loading == nil && (victim == nil || e.last.Before(victim.last)) {
				victim = e
			}
		}
		if victim == nil {
			return errBudget
		}
		p.log.Info("unloading model", "model", victim.id)
		victim.m.close()
		victim.m = nil
		p.used -= victim.size
	}
	return nil
}

func (p *pool) load(ctx context.Context, e *poolEntry) (*served, error) {
	p.log.Info("loading model", "model", e.id)
	m, err := llama.LoadModel(ctx, e.path, &llama.ModelParams{GPULayers: p.gpu})
	if err != nil {
		return nil, err
	}
	cfg := p.ecfg
	eng, err := engine.New(m, &cfg)
	if err != nil {
		m.Close()
		return nil, err
	}
	tmpl, err := llama.NewChatTemplate(m, nil)
	if err != nil {
		eng.Close()
		m.Close()
		return nil, err
	}
	return &served{id: e.id, model: m, engine: eng, template: tmpl}, nil
}

func (m *served) close() {
	m.template.Close()
	m.engine.Close()
	m.model.Close()
}

// Close unloads every model of the pool.
func (p *pool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.entries {
		if e.m != nil {
			e.m.close()
			e.m = nil
		}
	}
}

// closeEngines ends the requests of every loaded model (shutdown past its grace period);
// the models stay until Close.
func (p *pool) closeEngines() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.entries {
		if e.m != nil {
			e.m.engine.Close()
		}
	}
}

// status lists the pool's models: id and whether each is loaded.
func (p *pool) status() []modelStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]modelStatus, len(p.entries))
	for i, e := range p.entries {
		out[i] = modelStatus{e.id, e.m != nil}
	}
	return out
}

type modelStatus struct {
	id     string
	loaded bool
}

// use returns the model a request names (the first model for "" or, with one model
// only, any name) and the release to defer; an unknown name is OpenAI's 404.
func (s *server) use(ctx context.Context, id string) (*served, func(), error) {
	if s.pool == nil || id == "" || id == s.primary.id {
		return &s.primary, func() {}, nil
	}
	m, release, ok, err := s.pool.acquire(ctx, id)
	if !ok {
		code := "model_not_found"
		return nil, nil, &apiError{status: http.StatusNotFound, Message: fmt.Sprintf("the model %q does not exist", id), Type: "invalid_request_error", Code: &code}
	}
	if err != nil {
		return nil, nil, err
	}
	return m, release, nil
}
