// Package engine serves many generation requests with one model and one context by
// continuous batching: each request gets a sequence slot of the context, and every
// decode call carries the next token of every generating request plus chunks of the
// prompts being processed. Requests sample with their own samplers and stop
// conditions, are admitted as slots free up, and reuse prompt prefixes that any slot
// computed before (a shared system prompt is decoded once).
//
//	e, err := engine.New(model, &engine.Params{Slots: 8})
//	...
//	for d, err := range e.Generate(ctx, &engine.Request{Prompt: tokens, MaxTokens: 256}) {
//		if err != nil { ... }
//		fmt.Print(d.Text)
//	}
package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/llamago/llamago/internal/osthread"
	"github.com/llamago/llamago/llama"
)

var (
	// ErrClosed is returned by requests to an engine that is closed or closing.
	ErrClosed = errors.New("engine: closed")
	// ErrQueueFull is returned when MaxQueue requests are waiting already.
	ErrQueueFull = errors.New("engine: queue full")
	// ErrTooLong is returned for a request whose prompt and MaxTokens cannot fit the
	// context (it also matches llama.ErrInputTooLong).
	ErrTooLong = fmt.Errorf("engine: request does not fit the context: %w", llama.ErrInputTooLong)
)

// Params configures an Engine. The zero value (or nil) serves 4 slots in a context of
// llama.DefaultNCtx tokens shared by all of them.
type Params struct {
	// Slots is the number of requests generating at once (sequences of the context).
	Slots int
	// Context configures the context; NCtx is the KV cache shared by all slots (one
	// request may use all of it; see SplitCache). NSeqMax and KVUnified are set by
	// the engine.
	Context *llama.ContextParams
	// MaxQueue is how many requests may wait for a slot; more get ErrQueueFull. 0: 256.
	MaxQueue int
	// BurstWait is how long an idle engine waits for a further request after each one
	// that arrives, at most 10 times in a row, before its first step: requests sent
	// together (a batch job's, a benchmark's) then read their prompts in one batch
	// instead of the first alone and the rest a step later (a device that one prompt
	// does not fill takes nearly as long for it as for several). A lone request waits
	// it once. 0: 200 µs; < 0: no wait.
	BurstWait time.Duration
	// DefaultMaxTokens bounds requests that give no MaxTokens. 0: the context's end.
	DefaultMaxTokens int
	// SplitCache gives every slot its own NCtx/Slots part of the KV cache instead of
	// one cache they share: attention then reads only the slot's own cells (faster
	// with many slots and long caches), but a request may use only its part, and a
	// cached prefix is reused only by the slot that computed it. While waiting prompts
	// fill whole batches, generating requests then get a token every other step (steps
	// read prompts or next tokens, in turn: see step).
	SplitCache bool
	// DeviceSampling samples on the device what it can do there for all rows of a step
	// at once (llama.Context.SetBackendSampler): greedy requests with one argmax, and
	// requests whose chain starts with TopK (the default chain) by narrowing each row to
	// the groups of tokens that hold its top k, one narrowing per k, so that a few
	// thousand candidates leave a GPU instead of the whole row; the CPU then runs the
	// chain on them with the same result. Other chains, and every request when it is
	// off, are sampled on the CPU from all logits, the rows of a step in parallel
	// (llama.Context.SampleRows): llama.cpp's per-sequence device chains measured slower
	// than that on an H100 from 32 sequences on (docs/performance.md). Leave it off on
	// CPU-only builds.
	DeviceSampling bool
	// NewDrafter, when not nil, makes each slot a drafter for speculative decoding
	// (llama.GenerateParams.Draft): New calls it once per slot, Close closes those that
	// are io.Closers. Outputs stay what they are without drafts; requests sampled on
	// the device (DeviceSampling) do not draft. DraftMax bounds a draft (0: 8).
	NewDrafter func() (llama.Drafter, error)
	DraftMax   int
	// Logger receives the engine's own events; nil: silent.
	Logger *slog.Logger
}

// Engine owns one context of a model and serves Generate calls from any goroutine.
// Close it when done; it does not close the model.
type Engine struct {
	model *llama.Model
	ctx   *llama.Context
	cfg   Params
	nCtx  int
	log   *slog.Logger

	mu       sync.Mutex
	queue    []*job            // admitted in order
	lora     []llama.LoRAScale // what SetLoRA applied
	controls []*control        // slot saves and restores for the loop, see slot_state.go
	closed   bool
	draining bool // Shutdown: no new requests
	stats    counters
	active   atomic.Int64 // slots serving a request
	cells    atomic.Int64 // cellsInUse, published by the loop

	wake chan struct{} // cap 1: new work, a cancellation or Close
	quit chan struct{} // closed by Close
	done chan struct{} // closed when the loop has ended

	// Owned by the loop goroutine.
	slots []*slot
	batch *llama.Batch
	outs  []output
	picks []llama.RowSample // scratch of sample, parallel to outs
	emits []emission        // tokens sampled in the last step, delivered during the next
	rr    int               // first prompt slot served in the next step (round robin)
	held  bool              // the last step held back the next tokens of generating slots (SplitCache)
	clock uint64            // orders slot use, for evicting the least recently used cache
}

// output is a batch row whose logits a slot samples.
type output struct {
	s   *slot
	row int
}

// emission is a token sampled for a request, to stream to it; last: the request ends
// with it.
type emission struct {
	s    *slot
	j    *job
	tok  llama.Token
	last bool
	lp   *llama.Generated // with Request.Logprobs
}

// New creates an engine for m with its own context. The model must outlive it.
func New(m *llama.Model, cfg *Params) (*Engine, error) {
	var c Params
	if cfg != nil {
		c = *cfg
	}
	if c.Slots == 0 {
		c.Slots = 4
	}
	if c.MaxQueue == 0 {
		c.MaxQueue = 256
	}
	if c.DraftMax == 0 {
		c.DraftMax = 8
	}
	if c.BurstWait == 0 {
		c.BurstWait = 200 * time.Microsecond
	}
	if c.Slots < 0 || c.MaxQueue < 0 || c.DefaultMaxTokens < 0 || c.DraftMax < 0 {
		return nil, fmt.Errorf("%w: engine: Slots, MaxQueue, DefaultMaxTokens and DraftMax must not be negative", llama.ErrInvalidParams)
	}
	var cp llama.ContextParams
	if c.Context != nil {
		cp = *c.Context
	}
	cp.NSeqMax = c.Slots
	// A unified cache shares prefixes between slots by cell metadata, without copies.
	cp.KVUnified = !c.SplitCache
	lc, err := m.NewContext(&cp)
	if err != nil {
		return nil, err
	}
	batch, err := llama.NewBatch(lc.NBatch(), 1)
	if err != nil {
		lc.Close()
		return nil, err
	}
	e := &Engine{
		model: m, ctx: lc, cfg: c, nCtx: lc.NCtx(), batch: batch,
		log:  c.Logger,
		wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{}),
	}
	if c.SplitCache {
		e.nCtx /= c.Slots
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	for i := range c.Slots {
		s := &slot{seq: llama.SeqID(i)}
		e.slots = append(e.slots, s)
		if c.NewDrafter == nil {
			continue
		}
		if s.drafter, err = c.NewDrafter(); err != nil {
			e.closeDrafters()
			batch.Close()
			lc.Close()
			return nil, fmt.Errorf("engine: drafter: %w", err)
		}
	}
	e.stats.started = time.Now()
	osthread.Go(e.loop)
	return e, nil
}

// Model is the engine's model.
func (e *Engine) Model() *llama.Model { return e.model }

// NCtx is the most tokens (prompt and generated) one request can use: the size of
// the KV cache the slots share, or of one slot's part with SplitCache.
func (e *Engine) NCtx() int { return e.nCtx }

// Slots is the number of requests generating at once.
func (e *Engine) Slots() int { return len(e.slots) }

// Close stops the engine: waiting requests end with ErrClosed, generating ones with
// ErrClosed after the step in progress. It waits for the loop to end, then frees the
// context. Calling it again is a no-op.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		<-e.done
		return nil
	}
	e.closed = true
	e.mu.Unlock()
	close(e.quit)
	<-e.done
	e.batch.Close()
	e.closeDrafters()
	return e.ctx.Close()
}

func (e *Engine) closeDrafters() {
	for _, s := range e.slots {
		if c, ok := s.drafter.(io.Closer); ok {
			c.Close()
		}
	}
}

// Shutdown stops admitting requests and waits until those already admitted or queued
// have finished, or ctx ends (then the remaining ones end with ErrClosed); then it
// closes the engine. It is the graceful counterpart of Close.
func (e *Engine) Shutdown(ctx context.Context) error {
	e.mu.Lock()
	e.draining = true
	e.mu.Unlock()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		m := e.Metrics()
		if m.Queued == 0 && m.Active == 0 {
			return e.Close()
		}
		select {
		case <-ctx.Done():
			e.Close()
			return context.Cause(ctx)
		case <-tick.C:
		}
	}
}

func (e *Engine) signal() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// submit queues j, or says why it cannot.
func (e *Engine) submit(j *job) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case e.closed || e.draining:
		return ErrClosed
	case len(e.queue) >= e.cfg.MaxQueue:
		e.stats.rejected++
		return fmt.Errorf("%w: %d requests waiting", ErrQueueFull, len(e.queue))
	}
	j.queuedAt = time.Now()
	e.queue = append(e.queue, j)
	e.stats.requests++
	e.signal()
	return nil
}

// loop is the goroutine that owns the context: it admits queued requests into free
// slots and decodes one step of all active slots at a time. It has an OS thread of its
// own (internal/osthread) for every call into llama.cpp: a goroutine that wakes up on
// another thread after each step made the CUDA calls of the next decode measurably
// slower (docs/performance.md). A context computing on the CPU does so on its own
// thread, as everywhere (llama.Context's "Threads").
func (e *Engine) loop() {
	defer close(e.done)
	defer e.failAll(ErrClosed)
	for {
		select {
		case <-e.quit:
			return
		default:
		}
		e.reapCancelled()
		e.runControls()
		if !e.anyActive() && e.queued() > 0 {
			e.awaitBurst()
		}
		e.admit()
		e.cells.Store(int64(e.cellsInUse()))
		if !e.anyActive() {
			select {
			case <-e.quit:
				return
			case <-e.wake:
			}
			continue
		}
		e.step()
	}
}

// queued is the number of requests waiting for a slot.
func (e *Engine) queued() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.queue)
}

// awaitBurst waits, before an idle engine admits requests, while more keep arriving
// (Params.BurstWait) and slots remain for them.
func (e *Engine) awaitBurst() {
	n := e.queued()
	for range 10 {
		if e.cfg.BurstWait < 0 || n >= len(e.slots) {
			return
		}
		select {
		case <-e.quit:
			return
		case <-time.After(e.cfg.BurstWait):
		}
		m := e.queued()
		if m == n {
			return
		}
		n = m
	}
}

func (e *Engine) anyActive() bool {
	for _, s := range e.slots {
		if s.job != nil {
			return true
		}
	}
	return false
}

// failAll ends every queued and active request with err.
func (e *Engine) failAll(err error) {
	e.mu.Lock()
	q := e.queue
	e.queue = nil
	e.mu.Unlock()
	for _, j := range q {
		j.finish(llama.FinishError, err)
	}
	for _, s := range e.slots {
		if s.job != nil {
			e.release(s, llama.FinishError, err)
		}
	}
}

// reapCancelled frees the slots and queue places of cancelled requests.
func (e *Engine) reapCancelled() {
	e.mu.Lock()
	q := e.queue[:0]
	var gone []*job
	for _, j := range e.queue {
		if j.cancelled() {
			gone = append(gone, j)
		} else {
			q = append(q, j)
		}
	}
	clear(e.queue[len(q):])
	e.queue = q
	e.mu.Unlock()
	for _, j := range gone {
		j.finish(llama.FinishCancelled, j.cancelCause())
	}
	for _, s := range e.slots {
		if s.job != nil && s.job.cancelled() {
			e.release(s, llama.FinishCancelled, s.job.cancelCause())
		}
	}
}

// step decodes one batch: the next token of every generating slot, then prompt
// chunks of the slots still reading their prompts, round robin, as far as n_batch
// allows; streams the tokens of the previous step while the device computes (a GPU
// returns from Decode at once); then samples every slot that produced logits.
func (e *Engine) step() {
	b := e.batch
	b.Clear()
	e.outs = e.outs[:0]
	// With a split cache llama.cpp cuts a batch into micro-batches of equally many
	// tokens of each of consecutive sequences: next tokens, one per sequence, beside
	// prompt chunks make short micro-batches of their own and cut the prompts into
	// more. So while waiting prompts fill the batch by themselves, steps read either
	// prompts only (as llama-batched-bench does) or next tokens only, in turn: a
	// generating slot waits at most one step in a row.
	alternate := e.cfg.SplitCache && e.generating() && e.promptTokens() >= b.Cap()
	readPrompts := !alternate || !e.held
	e.held = alternate && !e.held
	for _, s := range e.slots {
		if s.generating() && !e.held {
			e.add(s, []llama.Token{s.next}, true)
		}
	}
	n := len(e.slots)
	for i := range n {
		s := e.slots[(e.rr+i)%n]
		room := b.Cap() - b.Len()
		if room == 0 || !readPrompts {
			break
		}
		if s.job == nil || len(s.pending) == 0 {
			continue
		}
		chunk := s.pending[:min(room, len(s.pending))]
		e.add(s, chunk, len(chunk) == len(s.pending))
	}
	e.rr = (e.rr + 1) % n
	if !e.held {
		e.addDrafts()
	}
	if b.Len() == 0 {
		e.emit()
		return
	}

	start := time.Now()
	err := e.ctx.Decode(context.Background(), b)
	elapsed := time.Since(start)
	if err == nil {
		e.commitBatch()
	}
	e.emit()
	if errors.Is(err, llama.ErrContextFull) && e.makeRoom() {
		// llama.cpp finds cells for the whole batch before computing any of it: nothing
		// was stored. Build the batch again with the room made.
		for _, s := range e.slots {
			s.inBatch, s.draft = 0, nil
		}
		return
	}
	if err != nil {
		e.decodeFailed(err)
		return
	}

	perf, _ := e.ctx.Perf()
	e.mu.Lock()
	e.stats.steps++
	e.stats.decodeTime += elapsed
	e.stats.graphReuses = uint64(perf.GraphReuses)
	e.mu.Unlock()
	e.sample()
}

// generating reports whether some slot decodes its next token in a step.
func (e *Engine) generating() bool {
	for _, s := range e.slots {
		if s.generating() {
			return true
		}
	}
	return false
}

// promptTokens is the number of prompt tokens that active slots have still to decode.
func (e *Engine) promptTokens() int {
	n := 0
	for _, s := range e.slots {
		if s.job != nil {
			n += len(s.pending)
		}
	}
	return n
}

// add appends tokens of slot s to the batch at its next positions; logits for the
// last one when out.
func (e *Engine) add(s *slot, tokens []llama.Token, out bool) {
	for i, t := range tokens {
		last := i == len(tokens)-1
		if err := e.batch.Add(t, llama.Pos(len(s.cached)+s.inBatch), last && out, s.seq); err != nil {
			panic(err) // the engine sizes its batch; a failure here is a bug
		}
		s.inBatch++
	}
	if out {
		e.outs = append(e.outs, output{s, e.batch.Len() - 1})
	}
}

// addDrafts fills the batch's remaining room with drafts of the generating slots, each
// after its next token, as far as free cache cells allow.
func (e *Engine) addDrafts() {
	free := e.ctx.NCtx() - e.batch.Len()
	for _, s := range e.slots {
		free -= len(s.cached)
	}
	for _, s := range e.slots {
		if s.drafter == nil || !s.generating() || s.job.req.Media != nil {
			continue
		}
		s.draft = e.draftFor(s, min(e.batch.Cap()-e.batch.Len(), free))
		s.draftRow = e.batch.Len()
		free -= len(s.draft)
		for _, t := range s.draft {
			if err := e.batch.Add(t, llama.Pos(len(s.cached)+s.inBatch), true, s.seq); err != nil {
				panic(err)
			}
			s.inBatch++
		}
	}
}

// draftFor asks the drafter of generating slot s for at most limit tokens to follow its
// next token. A drafter that fails costs speed only: it is logged.
func (e *Engine) draftFor(s *slot, limit int) []llama.Token {
	j := s.job
	if s.drafter == nil || j.onDevice {
		return nil
	}
	n := min(e.cfg.DraftMax, limit, j.maxTokens-j.generated-1, e.nCtx-len(s.cached)-2)
	if n <= 0 {
		return nil
	}
	s.history = append(append(s.history[:0], s.cached...), s.next)
	d, err := s.drafter.Draft(context.Background(), s.history, n)
	if err == nil && len(d) > n {
		err = fmt.Errorf("%d tokens, asked for at most %d", len(d), n)
	}
	for _, t := range d {
		if err == nil && !e.model.ValidToken(t) {
			err = fmt.Errorf("%w: %d", llama.ErrInvalidToken, t)
		}
	}
	if err != nil {
		e.log.Warn("engine: draft refused", "seq", s.seq, "err", err)
		return nil
	}
	j.drafted += len(d)
	e.mu.Lock()
	e.stats.drafted += uint64(len(d))
	e.mu.Unlock()
	return d
}

// dropDraft removes the drafted tokens of s that were not taken from its cache.
func (e *Engine) dropDraft(s *slot) {
	if len(s.draft) == 0 {
		return
	}
	s.draft = nil
	if _, err := e.ctx.MemorySeqRemove(s.seq, llama.Pos(len(s.cached)), -1); err != nil {
		e.log.Warn("engine: dropping a draft", "err", err)
		e.forget(s)
	}
}

// commitBatch records the tokens of a decoded batch in their slots' caches.
func (e *Engine) commitBatch() {
	for _, s := range e.slots {
		if s.inBatch == 0 {
			continue
		}
		if len(s.pending) == 0 {
			s.cached = append(s.cached, s.next)
		} else {
			s.cached = append(s.cached, s.pending[:s.inBatch]...)
			e.mu.Lock()
			e.stats.promptTokens += uint64(s.inBatch)
			e.mu.Unlock()
			s.pending = s.pending[s.inBatch:]
		}
		s.inBatch = 0
	}
}

// decodeFailed ends the requests of the failed batch. Their slots' caches may hold
// part of the batch, so they are cleared.
func (e *Engine) decodeFailed(err error) {
	e.log.Error("engine: decode failed", "err", err, "tokens", e.batch.Len())
	for _, s := range e.slots {
		if s.inBatch == 0 {
			continue
		}
		s.inBatch, s.draft = 0, nil
		if s.job != nil {
			e.release(s, llama.FinishError, err)
		}
		e.forget(s)
	}
}

// sample picks the next token of every slot with an output row (their samplers run in
// parallel). A slot that drafted goes on to its next row while its sampler picks the
// drafted token: that token is in the cache already; the rest of a draft leaves it.
func (e *Engine) sample() {
	e.outs = slices.DeleteFunc(e.outs, func(o output) bool { return o.s.job == nil })
	for len(e.outs) > 0 {
		e.picks = e.picks[:0]
		for _, o := range e.outs {
			e.picks = append(e.picks, llama.RowSample{Sampler: o.s.job.sampler, Row: o.row})
		}
		start := time.Now()
		err := e.ctx.SampleRows(e.picks)
		elapsed := time.Since(start)
		e.mu.Lock()
		e.stats.sampleTime += elapsed
		e.mu.Unlock()
		if err != nil {
			for i := range e.picks {
				e.picks[i].Err = err
			}
		}
		again := e.outs[:0]
		for i, o := range e.outs {
			s, tok, err := o.s, e.picks[i].Token, e.picks[i].Err
			var lp *llama.Generated
			if err == nil && s.job.req.Logprobs {
				g, lerr := e.ctx.Logprobs(o.row, tok, s.job.req.TopLogprobs)
				lp, err = &g, lerr
			}
			e.picked(s, tok, err, lp)
			e.picks[i] = llama.RowSample{} // drop the sampler
			if len(s.draft) == 0 {
				continue
			}
			if s.job == nil || s.finishing || tok != s.draft[0] {
				e.dropDraft(s)
				continue
			}
			s.cached = append(s.cached, tok)
			s.draft = s.draft[1:]
			s.job.draftAccepted++
			e.mu.Lock()
			e.stats.draftAccepted++
			e.mu.Unlock()
			again = append(again, output{s, s.draftRow})
			s.draftRow++
		}
		e.outs = again
	}
}

// picked handles the token sampled for slot s (or the error sampling it): what decides
// the next batch happens now, the streaming in emit during the next step. Every token
// sampled before was streamed already.
func (e *Engine) picked(s *slot, tok llama.Token, err error, lp *llama.Generated) {
	j := s.job
	if err != nil {
		e.release(s, llama.FinishError, err)
		return
	}
	if j.generated == 0 {
		j.firstToken = time.Now()
	}
	if !j.req.IgnoreEOG && e.model.IsEOG(tok) {
		e.release(s, llama.FinishEOG, nil)
		return
	}
	j.generated++
	e.mu.Lock() // counted before the request can end: Metrics agree with its Result
	e.stats.generated++
	e.mu.Unlock()
	// The last token: streamed, then the request ends (emit). Until then the slot
	// decodes nothing more.
	s.finishing = j.generated >= j.maxTokens || len(s.cached)+1 >= e.nCtx
	s.next = tok
	e.emits = append(e.emits, emission{s, j, tok, s.finishing, lp})
}

// emit streams the tokens sampled in the last step and ends the requests that a stop
// string or their length ends. A request that a stop string ends may have its next
// token in the batch being decoded: it lands in the slot's cache, unseen.
func (e *Engine) emit() {
	for i, em := range e.emits {
		e.emits[i] = emission{}
		s, j := em.s, em.j
		if s.job != j {
			continue // ended meanwhile: cancelled, failed, closed
		}
		text, stopped, err := j.text.Push(em.tok)
		if err != nil {
			e.release(s, llama.FinishError, err)
			continue
		}
		d := Delta{Text: text, Tokens: []llama.Token{em.tok}}
		if em.lp != nil {
			d.Logprobs = []llama.Generated{*em.lp}
		}
		j.send(d)
		switch {
		case stopped:
			e.release(s, llama.FinishStop, nil)
		case em.last:
			e.release(s, llama.FinishLength, nil)
		}
	}
	e.emits = e.emits[:0]
}

// release ends the request of slot s; the slot keeps its cache for later prefix reuse.
func (e *Engine) release(s *slot, reason llama.FinishReason, err error) {
	j := s.job
	if reason != llama.FinishError && reason != llama.FinishCancelled {
		j.send(Delta{Text: j.text.Flush()})
	}
	s.job, s.pending, s.inBatch, s.finishing = nil, nil, 0, false
	e.active.Add(-1)
	e.clock++
	s.used = e.clock
	j.finish(reason, err)
}
