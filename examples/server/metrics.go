package main

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/llamago/llamago/llama/engine"
)

// newMetricsHandler serves the engine's metrics in Prometheus' text format.
func newMetricsHandler(e *engine.Engine) http.Handler {
	reg := prometheus.NewRegistry()
	// go_goroutines, process_resident_memory_bytes and the rest: what a leak shows in.
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	gauge := func(name, help string, f func(engine.Metrics) float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "llamago", Name: name, Help: help},
			func() float64 { return f(e.Metrics()) }))
	}
	counter := func(name, help string, f func(engine.Metrics) float64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "llamago", Name: name, Help: help},
			func() float64 { return f(e.Metrics()) }))
	}
	gauge("slots", "Sequence slots of the engine.", func(m engine.Metrics) float64 { return float64(m.Slots) })
	gauge("slots_active", "Slots serving a request.", func(m engine.Metrics) float64 { return float64(m.Active) })
	gauge("queue_depth", "Requests waiting for a slot.", func(m engine.Metrics) float64 { return float64(m.Queued) })
	gauge("kv_cache_cells_used", "Estimated KV cache cells in use (reservations included).", func(m engine.Metrics) float64 { return float64(m.CacheCells) })
	gauge("kv_cache_cells", "KV cache size in cells (tokens).", func(m engine.Metrics) float64 { return float64(m.NCtx) })
	gauge("tokens_per_second", "Prompt and generated tokens per second of decode time, since start.", engine.Metrics.TokensPerSecond)
	counter("requests_total", "Generation requests queued.", func(m engine.Metrics) float64 { return float64(m.Requests) })
	counter("requests_rejected_total", "Requests refused because the queue was full.", func(m engine.Metrics) float64 { return float64(m.Rejected) })
	counter("prompt_cache_hits_total", "Requests that reused a cached prompt prefix.", func(m engine.Metrics) float64 { return float64(m.PromptCacheHits) })
	counter("prompt_cached_tokens_total", "Prompt tokens taken from the cache instead of decoded.", func(m engine.Metrics) float64 { return float64(m.CachedTokens) })
	counter("prompt_tokens_total", "Prompt tokens decoded.", func(m engine.Metrics) float64 { return float64(m.PromptTokens) })
	counter("generated_tokens_total", "Tokens generated.", func(m engine.Metrics) float64 { return float64(m.GeneratedTokens) })
	counter("draft_tokens_total", "Tokens proposed by the draft model or prompt lookup (-md, -spec-type).", func(m engine.Metrics) float64 { return float64(m.DraftedTokens) })
	counter("draft_accepted_total", "Drafted tokens that were taken.", func(m engine.Metrics) float64 { return float64(m.DraftAccepted) })
	counter("decode_steps_total", "Decode calls.", func(m engine.Metrics) float64 { return float64(m.Steps) })
	counter("decode_seconds_total", "Time spent decoding.", func(m engine.Metrics) float64 { return m.DecodeTime.Seconds() })
	counter("sample_seconds_total", "Time spent sampling, with the wait for the device.", func(m engine.Metrics) float64 { return m.SampleTime.Seconds() })
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}
