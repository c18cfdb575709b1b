package llama

/*
#include "shim.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"unsafe"
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
// A sampler whose chain starts with TopK(k) (and has no grammar) is not attached
// itself either: the device narrows the sequence's rows to the groups of tokens that
// hold the top k (device_topk.cpp, one narrowing for all rows of the sequences with the
// same k; a few thousand logits leave the device instead of the
// whole row) and the CPU runs the whole chain on them, with the same result and the same
// random draws as from every logit. Sample such rows with a chain that starts with
// TopK(j), j <= k (others get ErrInvalidParams); Logits returns ErrNoLogits. When k is
// too large for narrowing to pay (more than a quarter of min(1024, vocabulary/8)),
// the sequence samples on the CPU (false). See leadingTopK.
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
	if narrow := s.deviceStage(); narrow >= 0 {
		on, err := c.attachOwn(seq, narrow, false)
		if !on && err == nil {
			c.attached.set(seq, nil, deviceChain{}) // the CPU
		}
		return on, err
	}
	var chain *C.struct_llama_sampler
	if s != nil && !s.noDevice {
		chain = s.chain
	}
	if on, err := c.setSampler(seq, chain); !on || chain == nil {
		c.attached.set(seq, nil, deviceChain{})
		return false, err
	}
	s.device = c
	c.attached.set(seq, s, deviceChain{})
	return true, nil
}

// setSampler is llama_set_sampler behind the exception barrier: whether llama.cpp took
// chain (nil detaches), or the error it threw.
func (c *Context) setSampler(seq SeqID, chain *C.struct_llama_sampler) (bool, error) {
	var cerr *C.char
	switch C.lgo_set_sampler(c.ptr, C.llama_seq_id(seq), chain, &cerr) {
	case 1:
		return true, nil
	case 0:
		return false, nil
	default:
		return false, cError(ErrInvalidParams, cerr)
	}
}

// deviceStage is the stage of ours that samples for s on the device (see
// SetBackendSampler): 0 for the shared greedy argmax, k for top-k narrowing to k; -1
// when there is none (s nil or any other chain).
func (s *Sampler) deviceStage() int {
	switch {
	case s == nil:
		return -1
	case s.onlyGreedy:
		return 0
	case s.leadingTopK() > 0:
		return s.leadingTopK()
	}
	return -1
}

// attachOwn attaches one of our device stages to seq: the shared greedy argmax (narrow
// 0) or top-k narrowing to narrow; auto marks an attachment a generation made by itself
// (see placeSampling). It reports false when the stage cannot run there (or, for
// narrowing, does not pay); the context is claimed.
func (c *Context) attachOwn(seq SeqID, narrow int, auto bool) (bool, error) {
	if c.attached.has(seq, narrow) {
		c.attached.markAuto(seq, auto)
		return true, nil
	}
	group := c.attached.deviceGroup()
	if group == nil {
		return false, errors.New("llama: out of memory for a device sampler")
	}
	var chain *C.struct_llama_sampler
	if narrow == 0 {
		if chain = C.lgo_argmax_chain_new(group); chain == nil {
			return false, errors.New("llama: out of memory for a device sampler")
		}
	} else if chain = C.lgo_topk_chain_new(group, C.int32_t(narrow), C.int32_t(c.nVocab)); chain == nil {
		return false, nil
	}
	if on, err := c.setSampler(seq, chain); !on {
		C.llama_sampler_free(chain) // refused: llama.cpp did not keep it
		c.attached.set(seq, nil, deviceChain{})
		return false, err
	}
	c.attached.set(seq, nil, deviceChain{chain, narrow, auto})
	return true, nil
}

// placeSampling lets a generation in seq sample on the device by itself when that
// picks the same tokens sooner: the context computes its output layer on a GPU, seq
// has nothing attached with SetBackendSampler, s is Greedy alone or led by TopK, and
// neither log-probabilities nor a draft need the logits. The stage stays attached after
// the generation (each change makes llama.cpp plan its graphs again) until Decode,
// DecodeTokens, Encode, EvalMedia, SetBackendSampler or a generation that samples on the
// CPU. Where it cannot run, the generation samples on the CPU as before.
func (c *Context) placeSampling(seq SeqID, s *Sampler, o *GenerateParams) {
	if c.attached.userOwns(seq) {
		return
	}
	narrow := -1
	if c.autoDevice && o.Draft == nil && o.Logprobs == 0 && s.device == nil {
		narrow = s.deviceStage()
	}
	if narrow < 0 {
		c.dropAutoSampling(seq)
		return
	}
	if _, err := c.attachOwn(seq, narrow, true); err != nil {
		logGo(slog.LevelDebug, "llama: sampling on the CPU, the device refused the stage", "seq", seq, "err", err)
	}
}

// dropAutoSampling detaches what placeSampling attached to seq (all sequences: -1)
// before an operation that expects the logits on the CPU; the context is claimed.
func (c *Context) dropAutoSampling(seq SeqID) {
	for _, s := range c.attached.autoSeqs(seq) {
		if _, err := c.setSampler(s, nil); err != nil {
			logGo(slog.LevelWarn, "llama: detaching a device sampling stage", "seq", s, "err", err)
		}
		c.attached.set(s, nil, deviceChain{})
	}
}

// takesDevicePick reports why s may not sample a row that the device picked greedily or
// narrowed to the groups of its top k tokens.
func (s *Sampler) takesDevicePick(c *Context, row *C.lgo_row) error {
	if row.token != C.LLAMA_TOKEN_NULL && s.device != c && !s.onlyGreedy {
		return invalidParam("the row was picked greedily on the device (SetBackendSampler): sample it with a greedy sampler or detach the sequence")
	}
	if row.token == C.LLAMA_TOKEN_NULL && row.logits == nil && row.n_ids != row.n_cand && (s.topK < 1 || s.topK > int(row.n_ids)) {
		return invalidParam("the row was narrowed to its top %d tokens on the device (SetBackendSampler): sample it with a chain that starts with TopK(k), k <= %d, or detach the sequence", row.n_ids, row.n_ids)
	}
	return nil
}

// attachedSamplers are the samplers a context samples with on the device. The
// context's cleanup holds them, so a sampler is never freed before the context.
type attachedSamplers struct {
	mu     sync.Mutex
	seq    map[SeqID]*Sampler
	group  *C.lgo_device_group   // what our stages share (device_group.h)
	chains map[SeqID]deviceChain // our stages attached (see attachOwn)
	seen   map[SeqID]bool        // checkOutputs' scratch
}

// deviceChain is a chain of one of our device stages, attached to a sequence.
type deviceChain struct {
	ptr    *C.struct_llama_sampler
	narrow int  // 0: the shared greedy argmax; k: top-k narrowing to k
	auto   bool // attached by a generation (placeSampling), not by SetBackendSampler
}

// deviceGroup is the group the context's device stages share, made at first use (nil:
// out of memory). A chain is initialised for a device once, so every attachment makes
// a new one in it.
func (a *attachedSamplers) deviceGroup() *C.lgo_device_group {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.group == nil {
		a.group = C.lgo_device_group_new()
	}
	return a.group
}

// checkOutputs refuses a batch that asks a sequence sampling on the device for more
// than one output row: llama.cpp's device samplers take one row per sequence and decode
// (n_outputs_max_per_seq), and its refusal says only "invalid input batch".
func (a *attachedSamplers) checkOutputs(b *Batch) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.seq) == 0 && len(a.chains) == 0 {
		return nil
	}
	if a.seen == nil {
		a.seen = map[SeqID]bool{}
	}
	seen := a.seen
	clear(seen)
	for i := range b.Len() {
		if b.output[i] == 0 {
			continue
		}
		for _, s := range unsafe.Slice((*SeqID)(unsafe.Pointer(b.seqIDs[i])), b.nSeq[i]) {
			if a.seq[s] == nil && a.chains[s].ptr == nil {
				continue
			}
			if seen[s] {
				return fmt.Errorf("%w: sequence %d samples on the device (SetBackendSampler) and takes one output row per decode; batch index %d asks for another", ErrInvalidBatch, s, i)
			}
			seen[s] = true
		}
	}
	return nil
}

// any reports whether some sequence samples on the device.
func (a *attachedSamplers) any() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.seq) > 0 || len(a.chains) > 0
}

// has reports whether seq has our stage for narrow attached (see deviceChain).
func (a *attachedSamplers) has(seq SeqID, narrow int) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	ch, ok := a.chains[seq]
	return ok && ch.narrow == narrow
}

// onDevice reports whether seq samples on the device (its own sampler or our chain).
func (a *attachedSamplers) onDevice(seq SeqID) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.seq[seq] != nil || a.chains[seq].ptr != nil
}

// userOwns reports whether SetBackendSampler attached something to seq.
func (a *attachedSamplers) userOwns(seq SeqID) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	ch, own := a.chains[seq]
	return a.seq[seq] != nil || (own && !ch.auto)
}

// markAuto records who attached seq's stage (see deviceChain.auto).
func (a *attachedSamplers) markAuto(seq SeqID, auto bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if ch, ok := a.chains[seq]; ok {
		ch.auto = auto
		a.chains[seq] = ch
	}
}

// autoSeqs lists the sequences among seq (-1: all) with a stage placeSampling attached.
func (a *attachedSamplers) autoSeqs(seq SeqID) []SeqID {
	a.mu.Lock()
	defer a.mu.Unlock()
	var seqs []SeqID
	for s, ch := range a.chains {
		if ch.auto && (seq < 0 || s == seq) {
			seqs = append(seqs, s)
		}
	}
	return seqs
}

// set records what llama.cpp now samples seq with: the bound sampler s, our chain, or
// neither (nil, deviceChain{}: the CPU); our chain seq had before is no longer
// attached: freed.
func (a *attachedSamplers) set(seq SeqID, s *Sampler, own deviceChain) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if old := a.seq[seq]; old != nil {
		old.detached.Store(true)
		old.detach()
	}
	delete(a.seq, seq)
	if old, ok := a.chains[seq]; ok {
		C.llama_sampler_free(old.ptr)
		delete(a.chains, seq)
	}
	if s != nil {
		if a.seq == nil {
			a.seq = map[SeqID]*Sampler{}
		}
		a.seq[seq] = s
		s.attach()
	}
	if own.ptr != nil {
		if a.chains == nil {
			a.chains = map[SeqID]deviceChain{}
		}
		a.chains[seq] = own
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
		C.llama_sampler_free(chain.ptr)
		delete(a.chains, seq)
	}
	if a.group != nil {
		C.lgo_device_group_free(a.group)
		a.group = nil
	}
}
