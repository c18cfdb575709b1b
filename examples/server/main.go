// Command server is an OpenAI-compatible HTTP server for GGUF models: chat completions
// (streaming, tools, JSON-schema response formats), text completions, embeddings,
// model listing, health and Prometheus metrics. Requests are served concurrently by
// continuous batching (package llama/engine): every decode step carries the next
// token of every active request.
//
//	go run ./examples/server -model model.gguf -slots 8 -ctx 16384
//	curl http://127.0.0.1:8080/v1/chat/completions -d '{"messages":[{"role":"user","content":"Hi"}]}'
//
// It listens on 127.0.0.1 unless -host says otherwise. SIGINT or SIGTERM shuts it
// down gracefully: no new requests, in-flight ones finish within -shutdown-grace, the
// rest end with an error event.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/llamago/llamago/examples/internal/adapterflags"
	"github.com/llamago/llamago/examples/internal/draftflags"
	"github.com/llamago/llamago/examples/internal/modelfile"
	"github.com/llamago/llamago/llama"
	"github.com/llamago/llamago/llama/engine"
	"github.com/llamago/llamago/llama/gguf"
)

type config struct {
	model, name, host, apiKey string
	moreModels                []string // -model given again, and -models-dir
	modelsBudget              int64
	embeddingModel            string
	template                  string
	port                      int
	slots, nCtx, nBatch       int
	gpuLayers, threads        int
	queue, maxTokens          int
	maxBody                   int64
	timeout, grace            time.Duration
	embeddings, flashAttn     bool
	deviceSampling            string
	slotDir                   string
	cors                      []string
	adapters                  *adapterflags.Flags
	draft                     *draftflags.Flags
}

func main() {
	var cfg config
	flag.Func("model", "GGUF model file (default: the demo model "+modelfile.Demo+"; "+modelfile.Synthetic+"SHAPE: random weights, e.g. "+modelfile.Synthetic+"qwen2-0.5b); "+
		"repeat it to serve several: requests choose by \"model\" (the file name without .gguf), the first is the default", func(v string) error {
		if cfg.model == "" {
			cfg.model = v
		} else {
			cfg.moreModels = append(cfg.moreModels, v)
		}
		return nil
	})
	flag.Func("models-dir", "serve every .gguf file of this directory too, as -model does when repeated", func(dir string) error {
		files, err := filepath.Glob(filepath.Join(dir, "*.gguf"))
		if err == nil && len(files) == 0 {
			err = fmt.Errorf("no .gguf file in %s", dir)
		}
		cfg.moreModels = append(cfg.moreModels, files...)
		return err
	})
	flag.Func("models-budget-mib", "most MiB of model files loaded at once, the first model's included; others are loaded when asked for and the least recently used idle one unloaded (default: no limit)", func(v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			return errors.New("want a positive number of MiB")
		}
		cfg.modelsBudget = n << 20
		return nil
	})
	flag.StringVar(&cfg.name, "name", "", "model id reported to clients (default: the file name without .gguf)")
	flag.StringVar(&cfg.template, "template", "", "file holding a Jinja chat template to use instead of the model's")
	flag.StringVar(&cfg.host, "host", "127.0.0.1", "address to listen on")
	flag.IntVar(&cfg.port, "port", 8080, "port to listen on (0: any free port)")
	flag.StringVar(&cfg.apiKey, "api-key", os.Getenv("LLAMAGO_API_KEY"), "require this bearer token (default $LLAMAGO_API_KEY; empty: no authentication)")
	flag.IntVar(&cfg.slots, "slots", 4, "requests generating at once")
	flag.IntVar(&cfg.nCtx, "ctx", 8192, "KV cache size in tokens, shared by all slots")
	flag.IntVar(&cfg.nBatch, "batch", 2048, "most tokens per decode step")
	flag.IntVar(&cfg.gpuLayers, "ngl", -1, "layers on the GPU (-1: all)")
	flag.IntVar(&cfg.threads, "t", 0, "threads (0: physical cores)")
	flag.IntVar(&cfg.queue, "queue", 256, "requests that may wait for a slot; more get HTTP 429")
	flag.IntVar(&cfg.maxTokens, "max-tokens", 0, "default most tokens per reply (0: until the model stops or the cache is full)")
	flag.Int64Var(&cfg.maxBody, "max-body", 8<<20, "largest request body in bytes")
	flag.DurationVar(&cfg.timeout, "timeout", 10*time.Minute, "longest time a request may take")
	flag.DurationVar(&cfg.grace, "shutdown-grace", 30*time.Second, "how long in-flight requests may finish on shutdown")
	flag.BoolVar(&cfg.embeddings, "embeddings", true, "serve /v1/embeddings from an extra context of the model (its own pooling; mean for chat models)")
	flag.StringVar(&cfg.embeddingModel, "embedding-model", "", "GGUF model for /v1/embeddings, or a reranker for /v1/rerank, instead of -model")
	flag.BoolVar(&cfg.flashAttn, "fa", false, "flash attention")
	flag.StringVar(&cfg.deviceSampling, "device-sampling", "auto", "greedy requests pick on the GPU (one argmax over a step's rows; other samplers stay on the CPU): on, off, auto (on when layers are on a GPU)")
	cfg.adapters = adapterflags.Register(flag.CommandLine)
	cfg.draft = draftflags.Register(flag.CommandLine)
	flag.StringVar(&cfg.slotDir, "slot-save-path", "", "directory for POST /slots/{id}?action=save|restore (llama-server's; empty: off)")
	flag.Func("cors-origins", "let browser pages from these origins call the API: comma-separated, * for any (default: none)", func(v string) error {
		for o := range strings.SplitSeq(v, ",") {
			if o = strings.TrimSpace(o); o != "" {
				cfg.cors = append(cfg.cors, o)
			}
		}
		return nil
	})
	verbose := flag.Bool("v", false, "log llama.cpp and every request")
	flag.Parse()

	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
		llama.SetLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if err := run(cfg, log); err != nil {
		log.Error("server", "err", err)
		os.Exit(1)
	}
}

func run(cfg config, log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	// The port opens at once; until the model is loaded every request gets 503 "loading
	// model" (/health included), as llama-server answers.
	ln, err := net.Listen("tcp", net.JoinHostPort(cfg.host, fmt.Sprint(cfg.port)))
	if err != nil {
		return err
	}
	if ip := net.ParseIP(cfg.host); (ip == nil || !ip.IsLoopback()) && cfg.host != "localhost" && cfg.apiKey == "" {
		log.Warn("listening beyond this machine without an API key: anyone who can reach it may use the model (set -api-key)", "addr", ln.Addr())
	}
	var handler atomic.Pointer[http.Handler]
	loading := http.Handler(http.HandlerFunc(serveLoading))
	handler.Store(&loading)
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { (*handler.Load()).ServeHTTP(w, r) }),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute, // the body; streams are bounded by -timeout
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	defer srv.Close() // when loading fails
	log.Info("listening", "url", "http://"+ln.Addr().String())

	path, err := modelfile.ResolveDefault(cfg.model, gguf.TypeQ8_0)
	if err != nil {
		return err
	}
	m, err := llama.LoadModel(ctx, path, &llama.ModelParams{GPULayers: cfg.gpuLayers})
	if err != nil {
		return err
	}
	defer m.Close()
	if cfg.name == "" {
		cfg.name = strings.TrimSuffix(filepath.Base(path), ".gguf")
	}
	device := cfg.deviceSampling == "on" || (cfg.deviceSampling == "auto" && llama.Backend != "cpu" && cfg.gpuLayers != 0)
	fa := llama.FlashAttentionAuto
	if cfg.flashAttn {
		fa = llama.FlashAttentionOn
	}
	ecfg := &engine.Params{
		Slots: cfg.slots, MaxQueue: cfg.queue, DefaultMaxTokens: cfg.maxTokens, DeviceSampling: device, Logger: log,
		Context: &llama.ContextParams{NCtx: cfg.nCtx, NBatch: cfg.nBatch, Threads: cfg.threads, FlashAttention: fa},
	}
	drafts, err := cfg.draft.Load(ctx, m, cfg.gpuLayers, cfg.nCtx)
	if err != nil {
		return err
	}
	defer drafts.Close() // after the engine, which closes the slots' drafters
	if drafts != nil {
		// Drafts are checked on the CPU, several rows a slot: greedy requests do not
		// pick on the device then.
		device, ecfg.DeviceSampling = false, false
		ecfg.NewDrafter, ecfg.DraftMax = drafts.New, drafts.Max
	}
	eng, err := engine.New(m, ecfg)
	if err != nil {
		return err
	}
	defer eng.Close()
	adapters, err := cfg.adapters.Load(m)
	if err != nil {
		return err
	}
	defer adapters.Close()
	if err := eng.SetLoRA(ctx, adapters.LoRA...); err != nil {
		return err
	}
	if adapters.Control != nil {
		if err := eng.SetControlVector(ctx, adapters.Control, adapters.First, adapters.Last); err != nil {
			return err
		}
	}
	var topts *llama.ChatTemplateParams
	if cfg.template != "" {
		src, err := os.ReadFile(cfg.template)
		if err != nil {
			return err
		}
		topts = &llama.ChatTemplateParams{Source: string(src)}
	}
	tmpl, err := llama.NewChatTemplate(m, topts)
	if err != nil {
		return err
	}
	defer tmpl.Close()
	s := &server{
		primary: served{id: cfg.name, model: m, engine: eng, template: tmpl}, apiKey: cfg.apiKey,
		maxBody: cfg.maxBody, timeout: cfg.timeout, log: log, created: time.Now().Unix(), cors: cfg.cors,
		adapters: adapters,
	}
	if len(cfg.moreModels) > 0 {
		// The other models' engines: as the first's, without adapters and drafts.
		pcfg := *ecfg
		pcfg.NewDrafter, pcfg.DraftMax = nil, 0
		fi, err := os.Stat(path)
		if err != nil {
			return err
		}
		if s.pool, err = newPool(cfg.moreModels, cfg.modelsBudget, fi.Size(), pcfg, cfg.gpuLayers, log); err != nil {
			return err
		}
		defer s.pool.Close()
		if slices.ContainsFunc(s.pool.entries, func(e *poolEntry) bool { return e.id == cfg.name }) {
			return fmt.Errorf("two models with the id %q", cfg.name)
		}
	}
	if cfg.slotDir != "" {
		if s.slotDir, err = filepath.Abs(cfg.slotDir); err != nil {
			return err
		}
		if fi, err := os.Stat(s.slotDir); err != nil || !fi.IsDir() {
			return fmt.Errorf("-slot-save-path %s: not a directory", cfg.slotDir)
		}
	}
	s.embeddingName = cfg.name
	if cfg.embeddingModel != "" {
		em, err := llama.LoadModel(ctx, cfg.embeddingModel, &llama.ModelParams{GPULayers: cfg.gpuLayers})
		if err != nil {
			return fmt.Errorf("embedding model: %w", err)
		}
		defer em.Close()
		if s.embedder, err = newEmbedder(em, min(max(em.Info().NCtxTrain, 512), 8192, cfg.nCtx)); err != nil {
			return fmt.Errorf("embedding model context: %w", err)
		}
		defer s.embedder.Close()
		s.embeddingName = strings.TrimSuffix(filepath.Base(cfg.embeddingModel), ".gguf")
	} else if cfg.embeddings {
		if s.embedder, err = newEmbedder(m, min(cfg.nCtx, 4096)); err != nil {
			return fmt.Errorf("embeddings context: %w", err)
		}
		defer s.embedder.Close()
	}

	routes := s.routes()
	handler.Store(&routes)
	log.Info("ready", "model", cfg.name, "slots", cfg.slots, "ctx", eng.NCtx(), "device_sampling", device)

	select {
	case err := <-serveErr:
		return err
	case <-ctx.Done():
	}
	stop() // a second signal kills the process
	return s.shutdown(srv, eng, cfg.grace)
}

// shutdown stops accepting requests and lets in-flight ones finish within grace; then
// the engine closes, which ends the remaining ones with an error event.
func (s *server) shutdown(srv *http.Server, eng *engine.Engine, grace time.Duration) error {
	s.stopping.Store(true)
	s.log.Info("shutting down", "grace", grace, "active", eng.Metrics().Active)
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	err := srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		s.log.Warn("grace period over: ending the remaining requests")
		eng.Close()
		if s.pool != nil {
			s.pool.closeEngines()
		}
		s.inflight.Wait()
		err = srv.Close()
	}
	s.log.Info("stopped")
	return err
}
