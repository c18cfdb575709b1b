package llama

/*
#include "shim.h"
*/
import "C"

import (
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"
)

// DefaultSeed asks for a random seed (llama.cpp's LLAMA_DEFAULT_SEED).
const DefaultSeed uint32 = 0xFFFFFFFF

// Sampler picks the next token from a context's logits with a chain of stages
// (see NewSampler). It owns C memory: Close it. A Sampler serves one goroutine (and one
// generation) at a time: a second user gets ErrSamplerBusy. It keeps its Model's memory
// alive until closed.
type Sampler struct {
	chain   *C.struct_llama_sampler
	grammar *C.struct_llama_sampler // outside the chain: see lgo_sample_row
	cur     *C.llama_token_data     // n_vocab candidates of scratch space
	errSlot **C.char                // C memory for error messages: no Go allocation per call
	row     *C.lgo_row              // the row being sampled, in C memory (see sampleLocked)
	model   *Model
	nVocab  int
	topK    int // > 0: the chain starts with top-k (or greedy: 1), see lgo_sample_row
	seed    uint32
	stages  []Stage
	cleanup runtime.Cleanup
	// noDevice: llama.cpp v0.4.0's on-device Greedy returns an index into the
	// candidates an earlier stage left instead of a token id, so such chains stay on the CPU.
	noDevice bool
	// onlyGreedy: the chain is Greedy alone, so the device may pick with a shared
	// argmax (see SetBackendSampler).
	onlyGreedy bool

	use sync.Mutex // held by the call into C in progress (and by a whole generation)

	// A sampler attached to contexts for on-device sampling is freed only once the
	// last of them lets go (see Context.SetBackendSampler).
	mu       sync.Mutex // guards attached and the freeing
	closed   atomic.Bool
	attached int
	device   *Context    // the context s samples on the device for, once attached
	detached atomic.Bool // detached from device: its chain skips the device stages, unusable
}

// claim takes the sampler for one use (for sampling c, when not nil); the caller must
// s.use.Unlock(). A second goroutine gets ErrSamplerBusy instead of corrupting its state.
func (s *Sampler) claim(c *Context) error {
	if !s.use.TryLock() {
		if s.closed.Load() {
			return ErrClosed
		}
		return ErrSamplerBusy
	}
	if err := s.usable(c); err != nil {
		s.use.Unlock()
		return err
	}
	return nil
}

// usable reports why s cannot sample for c, if it cannot.
func (s *Sampler) usable(c *Context) error {
	switch {
	case s.closed.Load():
		return ErrClosed
	case s.detached.Load():
		return invalidParam("the sampler was detached from on-device sampling: make a new one")
	case c != nil && s.device != nil && s.device != c:
		return invalidParam("the sampler samples on the device for another context")
	case c != nil && c.nVocab != s.nVocab:
		return invalidParam("the sampler was made for a vocabulary of %d tokens, the context has %d", s.nVocab, c.nVocab)
	}
	return nil
}

type samplerResources struct {
	chain, grammar *C.struct_llama_sampler
	cur            *C.llama_token_data
	errSlot        **C.char
	row            *C.lgo_row
	model          *Model
}

func (r samplerResources) free() {
	C.llama_sampler_free(r.chain)
	if r.grammar != nil {
		C.llama_sampler_free(r.grammar)
	}
	C.free(unsafe.Pointer(r.cur))
	C.free(unsafe.Pointer(r.errSlot))
	C.free(unsafe.Pointer(r.row))
	r.model.release()
}

func (s *Sampler) resources() samplerResources {
	return samplerResources{s.chain, s.grammar, s.cur, s.errSlot, s.row, s.model}
}

// NewSampler builds a sampler chain from stages, applied in order. Seed and MinKeep
// configure the stages that use them wherever they appear. Unless a stage picks the
// token itself (Greedy, Dist, Mirostat, MirostatV2, AdaptiveP), the chain ends with a
// seeded random pick (Dist). Parameters are checked before llama.cpp sees them.
//
//	s, err := llama.NewSampler(m, llama.TopK(40), llama.TopP(0.95), llama.Temp(0.7), llama.Seed(42))
func NewSampler(m *Model, stages ...Stage) (*Sampler, error) {
	b := &chainBuilder{m: m, seed: DefaultSeed, minKeep: 0}
	for _, st := range stages {
		if cfg, ok := st.(configStage); ok {
			cfg.configure(b)
		}
	}
	for _, st := range stages {
		if err := st.check(m); err != nil {
			return nil, err
		}
	}
	if err := m.retain(); err != nil {
		return nil, err
	}
	var cerr *C.char
	if b.chain = C.lgo_chain_new(true, &cerr); b.chain == nil {
		m.release()
		return nil, cError(errSampler, cerr)
	}
	fail := func(err error) (*Sampler, error) {
		C.llama_sampler_free(b.chain)
		if b.grammar != nil {
			C.llama_sampler_free(b.grammar)
		}
		m.release()
		return nil, err
	}
	for _, st := range stages {
		if err := st.add(b); err != nil {
			return fail(err)
		}
	}
	if !b.terminal {
		if err := b.push(C.lgo_stage{kind: C.LGO_STAGE_DIST, seed: C.uint32_t(b.seed)}); err != nil {
			return fail(err)
		}
	}
	n := m.vocabInfo.NTokens
	s := &Sampler{
		chain:   b.chain,
		grammar: b.grammar,
		cur:     (*C.llama_token_data)(C.malloc(C.size_t(n) * C.sizeof_llama_token_data)),
		errSlot: (**C.char)(C.calloc(1, C.size_t(unsafe.Sizeof((*C.char)(nil))))),
		row:     (*C.lgo_row)(C.calloc(1, C.sizeof_lgo_row)),
		model:   m,
		nVocab:  n,
		topK:    b.preselect(),
		seed:    uint32(C.llama_sampler_get_seed(b.chain)),
		stages:  append([]Stage(nil), stages...),
		// Grammars run on the CPU only.
		noDevice:   b.grammar != nil || (b.greedy && b.n > 1),
		onlyGreedy: b.grammar == nil && b.leadingGreedy && b.n == 1,
	}
	s.cleanup = runtime.AddCleanup(s, samplerResources.free, s.resources())
	return s, nil
}

// IsGreedy reports whether the chain is Greedy alone (no grammar): on a device it picks
// with the argmax the context's greedy sequences share (SetBackendSampler).
func (s *Sampler) IsGreedy() bool { return s.onlyGreedy }

// HasDeviceStage reports whether SetBackendSampler samples for s with one of this
// package's device stages, which the context's sequences share, instead of attaching s
// itself: Greedy alone (one argmax over all rows) or a chain led by TopK without a
// grammar (narrowing; refused at attach time when k is too large to pay). s stays free
// to sample elsewhere.
func (s *Sampler) HasDeviceStage() bool { return s.deviceStage() >= 0 }

// leadingTopK is k when the chain starts with TopK(k) and has no grammar, 1 when it is
// Greedy alone, else 0. SetBackendSampler runs such chains with this package's device
// stages (the shared argmax, top-k narrowing) and never binds them to the context.
func (s *Sampler) leadingTopK() int {
	if s.grammar != nil {
		return 0
	}
	return s.topK
}

// Stages returns the stages the sampler was built from.
func (s *Sampler) Stages() []Stage { return append([]Stage(nil), s.stages...) }

// Seed is the seed of the chain's random stages (the one drawn when DefaultSeed was asked).
func (s *Sampler) Seed() uint32 { return s.seed }

// Sample picks a token from the logits of batch index idx of c's last decode (-1: the
// last output) and accepts it (updating penalties, grammar and other state).
func (s *Sampler) Sample(c *Context, idx int) (Token, error) {
	if err := s.claim(c); err != nil {
		return 0, err
	}
	defer s.use.Unlock()
	if err := c.enter(); err != nil {
		return 0, err
	}
	defer c.mu.Unlock()
	return s.sampleLocked(c, idx)
}

// sampleLocked samples with both s and c claimed.
func (s *Sampler) sampleLocked(c *Context, idx int) (Token, error) {
	if err := c.outputIndex(idx); err != nil {
		return 0, err
	}
	// The row lives in C memory: cgo's pointer check walks a Go object passed to C
	// whole, which for a slice of rows costs as much as the read itself.
	row := s.row
	if C.lgo_row_get(c.ptr, C.int32_t(idx), C.bool(c.attached.any()), true, row, s.errSlot) != 0 {
		return 0, s.takeError(ErrNoLogits)
	}
	if err := s.takesDevicePick(c, row); err != nil {
		return 0, err
	}
	return s.sampleRow(row)
}

// sampleRow runs the chain on a row read with lgo_row_get; c need not be held.
func (s *Sampler) sampleRow(row *C.lgo_row) (Token, error) {
	t := C.lgo_sample_row(s.chain, s.grammar, row, s.cur, C.int32_t(s.nVocab), C.int32_t(s.topK), s.errSlot)
	if t < 0 {
		return 0, s.takeError(ErrGrammar)
	}
	return Token(t), nil
}

// Candidate is a token with its logit and probability, as sampler stages see them.
type Candidate struct {
	Token Token
	Logit float32
	P     float32
}

// candidateCSize is the size of llama_token_data, which Candidate mirrors.
const candidateCSize = uintptr(C.sizeof_llama_token_data)

// Apply runs the sampler's stages on candidates (logits from anywhere) and returns the
// candidates that remain, in the order the stages left them, and the index of the one
// the chain selected (-1 for none). It does not Accept the selection.
func (s *Sampler) Apply(cands []Candidate) ([]Candidate, int, error) {
	if err := s.claim(nil); err != nil {
		return nil, -1, err
	}
	defer s.use.Unlock()
	if s.device != nil {
		return nil, -1, invalidParam("the sampler samples on the device: Apply would skip its device stages")
	}
	if len(cands) == 0 || len(cands) > s.nVocab {
		return nil, -1, invalidParam("%d candidates: want 1 to %d", len(cands), s.nVocab)
	}
	cur := unsafe.Slice((*Candidate)(unsafe.Pointer(s.cur)), len(cands))
	for i, c := range cands {
		if err := s.model.checkToken(c.Token); err != nil {
			return nil, -1, err
		}
		if math.IsNaN(float64(c.Logit)) {
			return nil, -1, invalidParam("candidate %d has a NaN logit", i)
		}
		cur[i] = c
	}
	arr := C.llama_token_data_array{data: s.cur, size: C.size_t(len(cands)), selected: -1}
	if C.lgo_apply(s.chain, s.grammar, &arr, s.errSlot) != 0 {
		return nil, -1, s.takeError(ErrGrammar)
	}
	out := append([]Candidate(nil), unsafe.Slice((*Candidate)(unsafe.Pointer(arr.data)), int(arr.size))...)
	return out, int(arr.selected), nil
}

// Accept records a token chosen elsewhere (a prompt token, a forced token) in the
// sampler's state. A grammar stage refuses tokens it forbids with ErrGrammar.
func (s *Sampler) Accept(t Token) error {
	if err := s.claim(nil); err != nil {
		return err
	}
	defer s.use.Unlock()
	if err := s.model.checkToken(t); err != nil {
		return err
	}
	if rc := C.lgo_accept(s.chain, s.grammar, C.llama_token(t), s.errSlot); rc != 0 {
		return s.takeError(ErrGrammar)
	}
	return nil
}

// Reset returns the sampler to its initial state (penalty history, grammar, mirostat).
func (s *Sampler) Reset() error {
	if err := s.claim(nil); err != nil {
		return err
	}
	defer s.use.Unlock()
	for _, p := range []*C.struct_llama_sampler{s.chain, s.grammar} {
		var cerr *C.char
		if p != nil && C.lgo_sampler_reset(p, &cerr) != 0 {
			return cError(ErrInvalidParams, cerr)
		}
	}
	return nil
}

// Close frees the sampler (once no context samples with it on the device any more),
// waiting for a call in progress on another goroutine. Calling it again is a no-op.
func (s *Sampler) Close() error {
	s.closed.Store(true)
	s.use.Lock()
	defer s.use.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.freeIfUnusedLocked()
	return nil
}

func (s *Sampler) attach() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.attached++
}

func (s *Sampler) detach() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.attached--
	s.freeIfUnusedLocked()
}

func (s *Sampler) freeIfUnusedLocked() {
	if s.closed.Load() && s.attached == 0 && s.chain != nil {
		s.cleanup.Stop()
		s.resources().free()
		s.chain, s.grammar, s.cur, s.errSlot, s.row = nil, nil, nil, nil, nil
	}
}

// takeError turns the message lgo_* left in errSlot into an error wrapping sentinel.
func (s *Sampler) takeError(sentinel error) error {
	msg := *s.errSlot
	*s.errSlot = nil
	return cError(sentinel, msg)
}

// cError turns a malloc'ed C message into an error wrapping sentinel, freeing it.
func cError(sentinel error, msg *C.char) error {
	if msg == nil {
		return sentinel
	}
	defer C.free(unsafe.Pointer(msg))
	return fmt.Errorf("%w: %s", sentinel, C.GoString(msg))
}
