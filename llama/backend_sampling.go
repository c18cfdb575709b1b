package llama

/*
#include "shim.h"
*/
import "C"

import "sync"

// SetBackendSampler makes the context sample sequence seq with s on the device that
// computes the output layer (llama.cpp's experimental backend sampling): only the chosen
// token leaves the device, saving a copy of the logits and the CPU-side sampling per
// token. Keep sampling with s.Sample or Generate as usual; they pick up the device's
// choice. It reports false, and sampling stays on the CPU, when the chain cannot run
// there (a grammar, Greedy after other stages, stages without a device implementation,
// a tensor-split model).
// s == nil detaches.
//
// Attaching binds s to this context for good (llama.cpp prepares a chain for one
// device once): s then samples only this context, Apply refuses it, and after it is
// detached it can only be closed. The context keeps s alive while attached.
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
	var chain *C.struct_llama_sampler
	if s != nil && !s.noDevice {
		chain = s.chain
	}
	ok := bool(C.llama_set_sampler(c.ptr, C.llama_seq_id(seq), chain)) && chain != nil
	if ok {
		s.device = c
		c.attached.set(seq, s)
	} else {
		c.attached.set(seq, nil)
	}
	return ok, nil
}

// attachedSamplers are the samplers a context samples with on the device. The
// context's cleanup holds them, so a sampler is never freed before the context.
type attachedSamplers struct {
	mu  sync.Mutex
	seq map[SeqID]*Sampler
}

func (a *attachedSamplers) set(seq SeqID, s *Sampler) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if old := a.seq[seq]; old != nil {
		old.detached.Store(true)
		old.detach()
	}
	delete(a.seq, seq)
	if s != nil {
		if a.seq == nil {
			a.seq = map[SeqID]*Sampler{}
		}
		a.seq[seq] = s
		s.attach()
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
}
