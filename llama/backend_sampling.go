package llama

/*
#include "shim.h"
*/
import "C"

import (
	"errors"
	"sync"
)

// SetBackendSampler makes the context sample sequence seq with s on the device that
// computes the output layer (llama.cpp's experimental backend sampling): only the chosen
// token leaves the device, saving a copy of the logits and the CPU-side sampling per
// token. Keep sampling with s.Sample or Generate as usual; they pick up the device's
// choice. It reports false, and sampling stays on the CPU, when the chain cannot run
// there (a grammar, Greedy after other stages, stages without a device implementation,
// a tensor-split model). s == nil detaches.
//
// A sampler that is only Greedy (IsGreedy) is not attached itself: the sequence picks
// greedily on the device, with one argmax over all output rows that the context's
// greedy sequences share, until it is detached or given another sampler. Attaching a
// greedy sampler to a sequence that picks greedily already costs nothing (other changes
// make llama.cpp re-plan its graphs at the next decode). Sample the sequence's rows with
// any greedy sampler; other samplers get ErrInvalidParams there. The rows' logits stay
// on the device (Logits returns ErrNoLogits).
//
// Attaching any other sampler binds s to this context for good (llama.cpp prepares a
// chain for one device once): s then samples only this context, Apply refuses it, and
// after it is detached it can only be closed. The context keeps s alive while attached.
func (c *Context) SetBackendSampler(seq SeqID, s *Sampler) (onDevice bool, err error) {
	if err := c.checkSeq(seq); err != nil {
		return false, err
	}
	if s != nil && s.closed.Load() {
		return false, ErrClosed
	}
	if s != nil && s.device != nil {
		return false, invalidParam("the sampler was attached for on-device sampling before: make a new one")
	}
	if s != nil && s.nVocab != c.nVocab {
		return false, invalidParam("the sampler was made for a vocabulary of %d tokens, the context has %d", s.nVocab, c.nVocab)
	}
	if err := c.enter(); err != nil {
		return false, err
	}
	defer c.mu.Unlock()
	if s != nil && s.onlyGreedy {
		return c.attachArgmax(seq)
	}
	var chain *C.struct_llama_sampler
	if s != nil && !s.noDevice {
		chain = s.chain
	}
	if !bool(C.llama_set_sampler(c.ptr, C.llama_seq_id(seq), chain)) || chain == nil {
		c.attached.set(seq, nil, nil)
		return false, nil
	}
	s.device = c
	c.attached.set(seq, s, nil)
	return true, nil
}

// attachArgmax makes seq pick greedily with the shared argmax; the context is claimed.
func (c *Context) attachArgmax(seq SeqID) (bool, error) {
	if c.attached.hasArgmax(seq) {
		return true, nil
	}
	chain := c.attached.argmaxChain()
	if chain == nil {
		return false, errors.New("llama: out of memory for a device sampler")
	}
	if !C.llama_set_sampler(c.ptr, C.llama_seq_id(seq), chain) {
		C.llama_sampler_free(chain) // refused: llama.cpp did not keep it
		c.attached.set(seq, nil, nil)
		return false, nil
	}
	c.attached.set(seq, nil, chain)
	return true, nil
}

// takesDevicePick reports why s may not take the token the device picked for a row.
func (s *Sampler) takesDevicePick(c *Context, row *C.lgo_row) error {
	if row.token != C.LLAMA_TOKEN_NULL && s.device != c && !s.onlyGreedy {
		return invalidParam("the row was picked greedily on the device (SetBackendSampler): sample it with a greedy sampler or detach the sequence")
	}
	return nil
}

// attachedSamplers are the samplers a context samples with on the device. The
// context's cleanup holds them, so a sampler is never freed before the context.
type attachedSamplers struct {
	mu     sync.Mutex
	seq    map[SeqID]*Sampler
	argmax *C.lgo_argmax_group               // shared by the greedy sequences' chains
	chains map[SeqID]*C.struct_llama_sampler // the argmax chains attached
}

// argmaxChain makes a chain of the context's shared greedy stage (nil: out of memory).
// A chain is initialised for a device once, so every attachment gets a new one.
func (a *attachedSamplers) argmaxChain() *C.struct_llama_sampler {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.argmax == nil {
		if a.argmax = C.lgo_argmax_group_new(); a.argmax == nil {
			return nil
		}
	}
	return C.lgo_argmax_chain_new(a.argmax)
}

// any reports whether some sequence samples on the device.
func (a *attachedSamplers) any() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.seq) > 0 || len(a.chains) > 0
}

// hasArgmax reports whether seq picks greedily with the shared argmax.
func (a *attachedSamplers) hasArgmax(seq SeqID) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.chains[seq] != nil
}

// set records what llama.cpp now samples seq with: the bound sampler s, the argmax
// chain, or neither (nil, nil: the CPU); the argmax chain seq had before is no longer
// attached: freed.
func (a *attachedSamplers) set(seq SeqID, s *Sampler, argmax *C.struct_llama_sampler) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if old := a.seq[seq]; old != nil {
		old.detached.Store(true)
		old.detach()
	}
	delete(a.seq, seq)
	if old := a.chains[seq]; old != nil {
		C.llama_sampler_free(old)
		delete(a.chains, seq)
	}
	if s != nil {
		if a.seq == nil {
			a.seq = map[SeqID]*Sampler{}
		}
		a.seq[seq] = s
		s.attach()
	}
	if argmax != nil {
		if a.chains == nil {
			a.chains = map[SeqID]*C.struct_llama_sampler{}
		}
		a.chains[seq] = argmax
	}
}

// releaseAll lets go of every sampler; the context is freed already.
func (a *attachedSamplers) releaseAll() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for seq, s := range a.seq {
		s.detach()
		delete(a.seq, seq)
	}
	for seq, chain := range a.chains {
		C.llama_sampler_free(chain)
		delete(a.chains, seq)
	}
	if a.argmax != nil {
		C.lgo_argmax_group_free(a.argmax)
		a.argmax = nil
	}
}
