package engine

import "time"

// counters are the engine's running totals, guarded by Engine.mu.
type counters struct {
	started       time.Time
	requests      uint64 // queued
	admitted      uint64
	rejected      uint64 // queue full
	cacheHits     uint64 // admitted requests that reused a cached prefix
	cachedTokens  uint64
	promptTokens  uint64 // decoded prompt tokens
	generated     uint64
	drafted       uint64
	draftAccepted uint64
	steps         uint64
	decodeTime    time.Duration
	sampleTime    time.Duration
	graphReuses   uint64
}

// Metrics is a snapshot of the engine's state and totals since New.
type Metrics struct {
	Slots  int // sequence slots
	Active int // slots serving a request
	Queued int // requests waiting for a slot

	Requests        uint64 // requests queued since New
	Rejected        uint64 // requests refused with ErrQueueFull
	PromptCacheHits uint64 // requests that reused a cached prompt prefix
	CachedTokens    uint64 // prompt tokens taken from the cache instead of decoded
	PromptTokens    uint64 // prompt tokens decoded
	GeneratedTokens uint64
	// DraftedTokens were proposed by drafters (Params.NewDrafter); DraftAccepted of
	// them were taken, each a token generated without a decode step of its own.
	DraftedTokens, DraftAccepted uint64
	Steps                        uint64        // decode calls
	DecodeTime                   time.Duration // time spent in them (on a GPU they return before the device is done)
	SampleTime                   time.Duration // time spent sampling, including the wait for the device to finish the step
	GraphReuses                  uint64        // steps that reused the previous step's compute graph
	Uptime                       time.Duration
	CacheCells                   int // estimated KV cache cells in use (reservations of active requests included)
	NCtx                         int // KV cache size in cells
}

// TokensPerSecond is the average of prompt and generated tokens per second of decode time.
func (m Metrics) TokensPerSecond() float64 {
	if m.DecodeTime <= 0 {
		return 0
	}
	return float64(m.PromptTokens+m.GeneratedTokens) / m.DecodeTime.Seconds()
}

// Metrics returns a snapshot of the engine's metrics; it is safe to call from any goroutine.
func (e *Engine) Metrics() Metrics {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := e.stats
	m := Metrics{
		Slots:           len(e.slots),
		Queued:          len(e.queue),
		Active:          int(e.active.Load()),
		Requests:        st.requests,
		Rejected:        st.rejected,
		PromptCacheHits: st.cacheHits,
		CachedTokens:    st.cachedTokens,
		PromptTokens:    st.promptTokens,
		GeneratedTokens: st.generated,
		DraftedTokens:   st.drafted,
		DraftAccepted:   st.draftAccepted,
		Steps:           st.steps,
		DecodeTime:      st.decodeTime,
		SampleTime:      st.sampleTime,
		GraphReuses:     st.graphReuses,
		Uptime:          time.Since(st.started),
		CacheCells:      int(e.cells.Load()),
		NCtx:            e.ctx.NCtx(),
	}
	return m
}
