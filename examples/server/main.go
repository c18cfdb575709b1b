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
	"github.com/llamago/llamago/examples/internal/cli"
	"github.com/llamago/llamago/examples/internal/draftflags"
	"github.com/llamago/llamago/llama"
	"github.com/llamago/llamago/llama/engine"
	"github.com/llamago/llamago/llama/gguf"
)

type config struct {
	*cli.Flags
	model          string   // the first -m: the default model
	moreModels     []string // -m given again, and --models-dir
	modelsBudget   int64
	name, host     string
	apiKey         string
	embeddingModel string
	mediaURLs      bool
	mediaMaxMiB    int
	template       string
	port           int
	slots, queue   int
	maxBody        int64
	timeout, grace time.Duration
	embeddings     bool
	deviceSampling string
	slotDir        string
	cors           []string
	adapters       *adapterflags.Flags
	draft          *draftflags.Flags

	// read from the flags
	modelParams *llama.ModelParams
	context     *llama.ContextParams
}

// parseFlags reads the command line: llama-server's flags (package cli) and the server's own.
func parseFlags(args []string) (*config, error) {
	f := cli.New("server", "An OpenAI-compatible HTTP server (llama-server's flags).")
	f.CtxSize, f.ManyModels = 8192, true
	f.Register(cli.Model, cli.Context)
	cfg := &config{Flags: f, host: "127.0.0.1", port: 8080, apiKey: os.Getenv("LLAMAGO_API_KEY"), slots: 4, queue: 256, mediaMaxMiB: 20,
		maxBody: 8 << 20, timeout: 10 * time.Minute, grace: 30 * time.Second, embeddings: true, deviceSampling: "auto"}
	models := f.Group("model")
	models.Func("--models-dir", "PATH", "serve every .gguf file of this directory too, as -m does when repeated (requests choose by \"model\", the file name without .gguf; the first -m is the default)", "", func(dir string) error {
		files, err := filepath.Glob(filepath.Join(dir, "*.gguf"))
		if err == nil && len(files) == 0 {
			err = fmt.Errorf("no .gguf file in %s", dir)
		}
		cfg.moreModels = append(cfg.moreModels, files...)
		return err
	})
	models.Func("--models-budget-mib", "N", "most MiB of model files loaded at once, the first model's included; others are loaded when asked for and the least recently used idle one unloaded (default: no limit)", "", func(v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			return errors.New("want a positive number of MiB")
		}
		cfg.modelsBudget = n << 20
		return nil
	})
	models.String(&cfg.name, "-a, --alias", "NAME", "model id reported to clients (default: the file name without .gguf)")
	models.String(&cfg.template, "--chat-template-file", "FNAME", "a Jinja chat template to use instead of the model's")
	models.Bool(&cfg.embeddings, "--embedding, --embeddings", "serve /v1/embeddings from an extra context of the model (its own pooling; mean for chat models)")
	models.String(&cfg.embeddingModel, "--embedding-model", "FNAME", "GGUF model for /v1/embeddings, or a reranker for /v1/rerank, instead of -m")
	f.RegisterProjector(models, "multimodal projector of the (first) model: chat messages may hold image_url (data: URLs) and input_audio parts")
	models.Bool(&cfg.mediaURLs, "--media-urls", "fetch image_url parts that are http(s) URLs (at most --media-max-mib, within 10 s)")
	models.Int(&cfg.mediaMaxMiB, "--media-max-mib", "largest image fetched for --media-urls, in MiB")
	g := f.Group("server")
	g.String(&cfg.host, "--host", "HOST", "address to listen on")
	g.Int(&cfg.port, "--port", "port to listen on (0: any free port)")
	g.String(&cfg.apiKey, "--api-key", "KEY", "require this bearer token (default $LLAMAGO_API_KEY; empty: no authentication)")
	g.Int(&cfg.slots, "-np, --parallel", "requests generating at once (slots)")
	g.Int(&cfg.queue, "--queue", "requests that may wait for a slot; more get HTTP 429")
	g.Int(&f.NPredict, "-n, --predict, --n-predict", "default most tokens per reply (-1: until the model stops or the cache is full)")
	g.Func("--max-body", "BYTES", "largest request body", "8388608", func(v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		cfg.maxBody = n
		return err
	})
	g.Func("-to, --timeout", "N", "longest time a request may take: seconds, or a duration such as 10m", "10m0s", durationSetter(&cfg.timeout))
	g.Func("--shutdown-grace", "N", "how long in-flight requests may finish on shutdown: seconds, or a duration", "30s", durationSetter(&cfg.grace))
	g.String(&cfg.deviceSampling, "--device-sampling", "{on,off,auto}", "greedy and top-k-led requests start sampling on the GPU (one argmax, one narrowing over a step's rows; other samplers stay on the CPU); auto: on when layers are on a GPU")
	g.String(&cfg.slotDir, "--slot-save-path", "PATH", "directory for POST /slots/{id}?action=save|restore (empty: off)")
	g.Func("--cors-origins", "ORIGINS", "let browser pages from these origins call the API: comma-separated, * for any (default: none)", "", func(v string) error {
		for o := range strings.SplitSeq(v, ",") {
			if o = strings.TrimSpace(o); o != "" {
				cfg.cors = append(cfg.cors, o)
			}
		}
		return nil
	})
	cfg.adapters = adapterflags.Register(f.Group("adapters"))
	cfg.draft = draftflags.Register(f.Group("speculative decoding"))
	if err := f.Parse(args); err != nil {
		return nil, err
	}
	if len(f.Models) > 0 {
		cfg.model, cfg.moreModels = f.Models[0], append(f.Models[1:len(f.Models):len(f.Models)], cfg.moreModels...)
	}
	var err error
	if cfg.modelParams, err = f.ModelFlags.Params(); err != nil {
		return nil, err
	}
	if cfg.context, err = f.ContextFlags.Params(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// fetcherFor is the fetcher of remote images --media-urls asks for, nil without it.
func fetcherFor(cfg *config) *mediaFetcher {
	if !cfg.mediaURLs {
		return nil
	}
	return newMediaFetcher(int64(cfg.mediaMaxMiB)<<20, 10*time.Second)
}

// durationSetter reads seconds ("600", as llama-server) or a Go duration ("10m").
func durationSetter(d *time.Duration) func(string) error {
	return func(v string) error {
		if n, err := strconv.Atoi(v); err == nil {
			*d = time.Duration(n) * time.Second
			return nil
		}
		var err error
		*d, err = time.ParseDuration(v)
		return err
	}
}

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		if !errors.Is(err, cli.ErrUsage) {
			fmt.Fprintln(os.Stderr, "server:", err)
		}
		os.Exit(2)
	}
	level := slog.LevelInfo
	if cfg.Verbose {
		level = slog.LevelDebug
		llama.SetLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if err := run(cfg, log); err != nil {
		log.Error("server", "err", err)
		os.Exit(1)
	}
}

func run(cfg *config, log *slog.Logger) error {
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

	path, err := cfg.ModelPath(ctx, gguf.TypeQ8_0)
	if err != nil {
		return err
	}
	mmproj, err := cfg.ProjectorPath(ctx) // -mm, -mmu, or -hf's
	if err != nil {
		return err
	}
	if cfg.modelParams, cfg.context, err = cfg.Fit(ctx, path, cfg.modelParams, cfg.context, os.Stderr); err != nil {
		return err
	}
	m, err := llama.LoadModel(ctx, path, cfg.modelParams)
	if err != nil {
		return err
	}
	defer m.Close()
	if cfg.name == "" {
		cfg.name = strings.TrimSuffix(filepath.Base(path), ".gguf")
	}
	gpuLayers := cfg.modelParams.GPULayers
	device := cfg.deviceSampling == "on" || (cfg.deviceSampling == "auto" && llama.Backend != "cpu" && gpuLayers != 0)
	ecfg := &engine.Params{
		Slots: cfg.slots, MaxQueue: cfg.queue, DefaultMaxTokens: cfg.MaxTokens(), DeviceSampling: device, Logger: log,
		Context: cfg.context,
	}
	drafts, err := cfg.draft.Load(ctx, m, gpuLayers, cfg.CtxSize)
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
	var projector *llama.Projector
	if mmproj != "" {
		if projector, err = m.LoadProjector(mmproj, &llama.ProjectorParams{NoGPU: gpuLayers == 0}); err != nil {
			return err
		}
		defer projector.Close()
		caps := projector.Caps()
		log.Info("multimodal projector loaded", "path", mmproj, "vision", caps.Vision, "audio", caps.Audio)
	}
	s := &server{
		primary: served{id: cfg.name, model: m, engine: eng, template: tmpl, projector: projector}, apiKey: cfg.apiKey,
		fetch:   fetcherFor(cfg),
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
		if s.pool, err = newPool(cfg.moreModels, cfg.modelsBudget, fi.Size(), pcfg, gpuLayers, log); err != nil {
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
		em, err := llama.LoadModel(ctx, cfg.embeddingModel, &llama.ModelParams{GPULayers: gpuLayers})
		if err != nil {
			return fmt.Errorf("embedding model: %w", err)
		}
		defer em.Close()
		if s.embedder, err = newEmbedder(em, min(max(em.Info().NCtxTrain, 512), 8192, cfg.CtxSize)); err != nil {
			return fmt.Errorf("embedding model context: %w", err)
		}
		defer s.embedder.Close()
		s.embeddingName = strings.TrimSuffix(filepath.Base(cfg.embeddingModel), ".gguf")
	} else if cfg.embeddings {
		if s.embedder, err = newEmbedder(m, min(cfg.CtxSize, 4096)); err != nil {
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
