package llama

/*
#include "shim.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"
)

// DefaultSeed asks for a random seed (llama.cpp's LLAMA_DEFAULT_SEED).
const DefaultSeed uint32 = 0xFFFFFFFF

// ErrGrammar is returned when a grammar cannot be parsed, allows no token, or forbids
// a token given to Sampler.Accept.
var ErrGrammar = errors.New("llama: grammar")

// Sampler picks the next token from a context's logits with a chain of stages
// (see NewSampler). It owns C memory: Close it. A Sampler serves one goroutine at a
// time and keeps its Model's memory alive until closed.
type Sampler struct {
	chain   *C.struct_llama_sampler
	grammar *C.struct_llama_sampler // outside the chain: see lgo_sample
	cur     *C.llama_token_data     // n_vocab candidates of scratch space
	model   *Model
	nVocab  int
	seed    uint32
	stages  []Stage
	cleanup runtime.Cleanup
}

type samplerResources struct {
	chain, grammar *C.struct_llama_sampler
	cur            *C.llama_token_data
	model          *Model
}

func (r samplerResources) free() {
	C.llama_sampler_free(r.chain)
	if r.grammar != nil {
		C.llama_sampler_free(r.grammar)
	}
	C.free(unsafe.Pointer(r.cur))
	r.model.release()
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
	params := C.llama_sampler_chain_default_params()
	params.no_perf = false
	b.chain = C.llama_sampler_chain_init(params)
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
		b.push(C.llama_sampler_init_dist(C.uint32_t(b.seed)))
	}
	n := m.vocabInfo.NTokens
	s := &Sampler{
		chain:   b.chain,
		grammar: b.grammar,
		cur:     (*C.llama_token_data)(C.malloc(C.size_t(n) * C.sizeof_llama_token_data)),
		model:   m,
		nVocab:  n,
		seed:    uint32(C.llama_sampler_get_seed(b.chain)),
		stages:  append([]Stage(nil), stages...),
	}
	s.cleanup = runtime.AddCleanup(s, samplerResources.free, samplerResources{s.chain, s.grammar, s.cur, m})
	return s, nil
}

// Stages returns the stages the sampler was built from.
func (s *Sampler) Stages() []Stage { return append([]Stage(nil), s.stages...) }

// Seed is the seed of the chain's random stages (the one drawn when DefaultSeed was asked).
func (s *Sampler) Seed() uint32 { return s.seed }

// Sample picks a token from the logits of batch index idx of c's last decode (-1: the
// last output) and accepts it (updating penalties, grammar and other state).
func (s *Sampler) Sample(c *Context, idx int) (Token, error) {
	if s.chain == nil {
		return 0, ErrClosed
	}
	if err := c.enter(); err != nil {
		return 0, err
	}
	defer c.mu.Unlock()
	return s.sampleLocked(c, idx)
}

func (s *Sampler) sampleLocked(c *Context, idx int) (Token, error) {
	if c.nVocab != s.nVocab {
		return 0, invalidParam("the sampler was made for a vocabulary of %d tokens, the context has %d", s.nVocab, c.nVocab)
	}
	if err := c.outputIndex(idx); err != nil {
		return 0, err
	}
	var cerr *C.char
	t := C.lgo_sample(s.chain, s.grammar, c.ptr, C.int32_t(idx), s.cur, C.int32_t(s.nVocab), &cerr)
	if t < 0 {
		return 0, cError(ErrGrammar, cerr)
	}
	return Token(t), nil
}

// Accept records a token chosen elsewhere (a prompt token, a forced token) in the
// sampler's state. A grammar stage refuses tokens it forbids with ErrGrammar.
func (s *Sampler) Accept(t Token) error {
	if s.chain == nil {
		return ErrClosed
	}
	if err := s.model.checkToken(t); err != nil {
		return err
	}
	var cerr *C.char
	if rc := C.lgo_accept(s.chain, s.grammar, C.llama_token(t), &cerr); rc != 0 {
		return cError(ErrGrammar, cerr)
	}
	return nil
}

// Reset returns the sampler to its initial state (penalty history, grammar, mirostat).
func (s *Sampler) Reset() error {
	if s.chain == nil {
		return ErrClosed
	}
	C.llama_sampler_reset(s.chain)
	if s.grammar != nil {
		C.llama_sampler_reset(s.grammar)
	}
	return nil
}

// Close frees the sampler. Calling it again is a no-op.
func (s *Sampler) Close() error {
	if s.chain == nil {
		return nil
	}
	s.cleanup.Stop()
	samplerResources{s.chain, s.grammar, s.cur, s.model}.free()
	s.chain, s.grammar, s.cur = nil, nil, nil
	return nil
}

// cError turns a malloc'ed C message into an error wrapping sentinel, freeing it.
func cError(sentinel error, msg *C.char) error {
	if msg == nil {
		return sentinel
	}
	defer C.free(unsafe.Pointer(msg))
	return fmt.Errorf("%w: %s", sentinel, C.GoString(msg))
}
