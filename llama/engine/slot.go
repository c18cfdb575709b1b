package engine

import (
	"context"
	"time"

	"github.com/llamago/llamago/llama"
)

// slot is one sequence of the context. Between requests it keeps its cache: the
// tokens whose keys and values are in the KV cache, for prefix reuse.
type slot struct {
	seq     llama.SeqID
	job     *job          // nil when idle
	cached  []llama.Token // tokens in the KV cache of seq, positions 0..len-1
	pending []llama.Token // prompt tokens still to decode
	next    llama.Token   // sampled, to decode in the next step
	// finishing: the request's last token was sampled; it ends once that is streamed.
	finishing bool
	inBatch   int // tokens of this slot in the batch being decoded
	// deviceStage: the sequence samples with a device stage (greedy or narrowing). It
	// stays attached between requests: attaching and detaching each make llama.cpp
	// re-plan its graphs.
	deviceStage bool
	used        uint64 // when it last served a request (Engine.clock)

	drafter  llama.Drafter // Params.NewDrafter's, or nil
	draft    []llama.Token // drafted tokens in the batch after next, not yet checked
	draftRow int           // the batch row of draft[0]
	history  []llama.Token // scratch: the tokens a draft follows
}

// generating reports whether s serves a request that has read its prompt and decodes
// its next token in a step.
func (s *slot) generating() bool { return s.job != nil && len(s.pending) == 0 && !s.finishing }

// reserve is how many cache cells an active slot is counted for when admitting:
// its prompt and a fair share of its generation (the cache is shared; a request that
// outgrows its share competes for the rest, see Engine.makeRoom).
func (e *Engine) reserve(j *job) int {
	return j.promptLen + min(j.maxTokens, max(1, e.nCtx/len(e.slots)))
}

// cellsInUse estimates the cache cells taken: the reservations of active slots and
// the caches of idle ones (cells shared between sequences are counted for each).
func (e *Engine) cellsInUse() int {
	n := 0
	for _, s := range e.slots {
		if s.job != nil {
			n += max(e.reserve(s.job), len(s.cached))
		} else {
			n += len(s.cached)
		}
	}
	return n
}

// admit moves queued requests into idle slots, in order, while the cache has room.
func (e *Engine) admit() {
	for {
		e.mu.Lock()
		if len(e.queue) == 0 {
			e.mu.Unlock()
			return
		}
		j := e.queue[0]
		e.mu.Unlock()
		s := e.idleSlot(j.prompt)
		if s == nil {
			return
		}
		var reused int
		if j.req.Media != nil {
			e.forget(s)
		} else {
			reused = e.reusePrefix(s, j.prompt)
		}
		// With SplitCache every slot has cells of its own: no request waits for another's.
		for !e.cfg.SplitCache && e.cellsInUse()-len(s.cached)+e.reserve(j) > e.nCtx {
			if !e.evictOne(s) {
				if e.anyActive() {
					return // wait for a request to finish
				}
				break // alone it fits: ErrTooLong was checked at submit
			}
		}
		e.mu.Lock()
		e.queue = e.queue[1:]
		e.active.Add(1) // with the queue, so that Shutdown never sees the job in neither
		e.stats.admitted++
		if reused > 0 {
			e.stats.cacheHits++
			e.stats.cachedTokens += uint64(reused)
		}
		e.mu.Unlock()

		j.cachedTokens = reused
		j.admittedAt = time.Now()
		s.job = j
		s.pending = j.prompt[len(s.cached):]
		if j.req.Media != nil {
			if err := e.evalMedia(s, j); err != nil {
				e.release(s, llama.FinishError, err)
				e.forget(s)
				continue
			}
		}
		if err := e.placeSampling(s, j); err != nil {
			e.release(s, llama.FinishError, err)
			continue
		}
		e.log.Debug("engine: admitted", "seq", s.seq, "prompt", j.promptLen, "reused", reused, "device_sampling", j.onDevice)
	}
}

// mediaToken fills the cached tokens of a slot where media were evaluated: positions
// without a token, which no prompt shares (no prefix reuse).
const mediaToken llama.Token = -1

// evalMedia evaluates the media of j's prompt into the empty slot s; the slot's cache
// then stands for the positions it took, and its text is pending.
func (e *Engine) evalMedia(s *slot, j *job) error {
	next, err := e.ctx.EvalMedia(context.Background(), j.req.Media, s.seq, 0)
	if err != nil {
		return err
	}
	for range next {
		s.cached = append(s.cached, mediaToken)
	}
	return nil
}

// placeSampling attaches one of package llama's shared device stages to the slot's
// sequence for a request whose sampler has one (with DeviceSampling), and detaches it
// for any other.
func (e *Engine) placeSampling(s *slot, j *job) error {
	device := e.cfg.DeviceSampling && j.sampler.HasDeviceStage() && !j.req.Logprobs // logprobs need the logits
	if device || s.deviceStage {
		var attach *llama.Sampler
		if device {
			attach = j.sampler
		}
		on, err := e.ctx.SetBackendSampler(s.seq, attach)
		if err != nil {
			return err
		}
		s.deviceStage = on
	}
	j.onDevice = s.deviceStage
	return nil
}

// idleSlot picks the idle slot for a prompt: the one whose cache shares the longest
// prefix with it, else the least recently used.
func (e *Engine) idleSlot(prompt []llama.Token) *slot {
	var best *slot
	bestLen := -1
	for _, s := range e.slots {
		if s.job != nil {
			continue
		}
		n := commonPrefix(s.cached, prompt)
		if n > bestLen || (n == bestLen && s.used < best.used) {
			best, bestLen = s, n
		}
	}
	return best
}

// reusePrefix makes the cache of s hold the longest prefix of prompt that any slot has
// computed (shared by cell metadata, no copy of data), keeping at least the last prompt
// token to decode: its logits start the generation. It returns the tokens reused.
func (e *Engine) reusePrefix(s *slot, prompt []llama.Token) int {
	own := commonPrefix(s.cached, prompt)
	src, srcLen := s, own
	for _, o := range e.slots {
		if n := commonPrefix(o.cached, prompt); n > srcLen && !e.cfg.SplitCache {
			src, srcLen = o, n
		}
	}
	srcLen = min(srcLen, len(prompt)-1)
	if src != s && srcLen > own {
		e.forget(s)
		if err := e.ctx.MemorySeqCopy(src.seq, s.seq, 0, llama.Pos(srcLen)); err != nil {
			e.log.Warn("engine: sharing a cached prefix", "err", err)
			return 0
		}
		s.cached = append(s.cached[:0], prompt[:srcLen]...)
		return srcLen
	}
	own = min(own, srcLen)
	if ok, err := e.ctx.MemorySeqRemove(s.seq, llama.Pos(own), -1); err != nil || !ok {
		e.forget(s) // recurrent models cannot drop a suffix: start over
		return 0
	}
	s.cached = s.cached[:own]
	return own
}

// forget drops the whole cache of slot s.
func (e *Engine) forget(s *slot) {
	if _, err := e.ctx.MemorySeqRemove(s.seq, -1, -1); err != nil {
		e.log.Warn("engine: clearing a slot", "err", err)
	}
	s.cached = s.cached[:0]
}

// evictOne drops the cache of the least recently used idle slot other than keep. It
// reports false when there is none to drop.
func (e *Engine) evictOne(keep *slot) bool {
	var victim *slot
	for _, s := range e.slots {
		if s != keep && s.job == nil && len(s.cached) > 0 && (victim == nil || s.used < victim.used) {
			victim = s
		}
	}
	if victim == nil {
		return false
	}
	e.forget(victim)
	return true
}

// makeRoom frees cache cells after a decode found the cache full: idle caches first,
// then the active request with the longest sequence ends with FinishLength. It
// reports false when nothing could be freed.
func (e *Engine) makeRoom() bool {
	if e.evictOne(nil) {
		return true
	}
	var longest *slot
	for _, s := range e.slots {
		if s.job != nil && len(s.pending) == 0 && (longest == nil || len(s.cached) > len(longest.cached)) {
			longest = s
		}
	}
	if longest == nil {
		return false
	}
	e.log.Warn("engine: KV cache full, ending the longest generation", "seq", longest.seq, "tokens", len(longest.cached))
	e.release(longest, llama.FinishLength, nil)
	e.forget(longest)
	return true
}

func commonPrefix(a, b []llama.Token) int {
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}
