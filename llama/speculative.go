package llama

/*
#include "shim.h"
*/
import "C"

import (
	"context"
	"fmt"
	"math"
	"slices"
)

// A Drafter proposes the tokens likely to follow a sequence, for speculative decoding
// (GenerateParams.Draft): the target model checks a whole draft in one decode, and
// the sampler keeps the drafted tokens it would have picked anyway. A draft changes
// only the speed, never the output.
type Drafter interface {
	// Draft returns at most limit tokens to follow history: the tokens of the sequence so
	// far, the last one sampled and not yet decoded. An empty draft is fine.
	Draft(ctx context.Context, history []Token, limit int) ([]Token, error)
}

// NgramDrafter drafts by prompt lookup, with no model: it finds the latest earlier
// place where the sequence's last tokens occurred and proposes what followed there.
// It pays off where the output repeats its input: code edits, extraction, quoting.
type NgramDrafter struct {
	// MinMatch and MaxMatch bound the length of the match looked up, longest first
	// (0: 2 and 4).
	MinMatch, MaxMatch int
}

// Draft implements Drafter.
func (d *NgramDrafter) Draft(_ context.Context, history []Token, limit int) ([]Token, error) {
	lo, hi := d.MinMatch, d.MaxMatch
	if lo <= 0 {
		lo = 2
	}
	if hi <= 0 {
		hi = max(lo, 4)
	}
	if lo > hi {
		return nil, invalidParam("NgramDrafter: MinMatch %d > MaxMatch %d", lo, hi)
	}
	for n := min(hi, len(history)-1); n >= lo; n-- {
		key := history[len(history)-n:]
		for i := len(history) - n - 1; i >= 0; i-- {
			if slices.Equal(history[i:i+n], key) {
				follow := history[i+n : min(i+n+limit, len(history))]
				return slices.Clone(follow), nil
			}
		}
	}
	return nil, nil
}

// ModelDrafter drafts with a smaller model that shares the target's vocabulary: the
// draft model's greedy continuation, from a context of its own that follows the target
// sequence between drafts (only new tokens are decoded). It serves one generation at a
// time (its context is busy otherwise). Close it.
type ModelDrafter struct {
	ctx     *Context
	held    []Token // tokens in the cache of sequence 0, positions 0..len-1
	minProb float32
	eog     func(Token) bool
	device  *Sampler // greedy on the device (GPU, no MinProb): only the token leaves it
	// The vocabularies may differ in size by up to 128 tokens: a draft ends before a
	// token the target lacks, and a history token the draft model lacks means no draft.
	targetTokens int
}

// ModelDrafterParams configures NewModelDrafter. The zero value (or nil) gives the
// draft context the default ContextParams and drafts until the draft model's own pick
// falls below a probability of 0.75.
type ModelDrafterParams struct {
	Context *ContextParams // the draft model's context; give it room for the whole sequence
	// MinProb ends a draft at the first token the draft model picks with a lower
	// probability (0: 0.75; negative: always draft the most asked for).
	MinProb float32
}

// NewModelDrafter makes a Drafter of draft for generations of target. The vocabularies
// must match as llama.cpp's speculative decoding requires: same type and special
// tokens, sizes within 128, the same text for every token both have.
func NewModelDrafter(target, draft *Model, p *ModelDrafterParams) (*ModelDrafter, error) {
	if target == nil || draft == nil {
		return nil, invalidParam("NewModelDrafter needs the target and the draft model")
	}
	if err := compatibleVocabs(target, draft); err != nil {
		return nil, err
	}
	var o ModelDrafterParams
	if p != nil {
		o = *p
	}
	switch {
	case o.MinProb == 0:
		o.MinProb = 0.75
	case o.MinProb > 1 || math.IsNaN(float64(o.MinProb)):
		return nil, invalidParam("ModelDrafterParams.MinProb %v: want at most 1", o.MinProb)
	}
	c, err := draft.NewContext(o.Context)
	if err != nil {
		return nil, err
	}
	d := &ModelDrafter{ctx: c, minProb: o.MinProb, eog: draft.IsEOG, targetTokens: target.Vocab().NTokens}
	if o.MinProb < 0 { // no probability to check: the device may pick, as llama.cpp's drafts do
		if err := d.pickOnDevice(draft); err != nil {
			c.Close()
			return nil, err
		}
	}
	return d, nil
}

// pickOnDevice attaches a greedy sampler to the draft context where a GPU computes it.
func (d *ModelDrafter) pickOnDevice(draft *Model) error {
	s, err := NewSampler(draft, Greedy())
	if err != nil {
		return err
	}
	on, err := d.ctx.SetBackendSampler(0, s)
	if err != nil || !on {
		s.Close()
		return err
	}
	d.device = s
	return nil
}

// compatibleVocabs checks that tokens of draft mean the same to target.
func compatibleVocabs(target, draft *Model) error {
	t, d := target.Vocab(), draft.Vocab()
	bad := func(what string, a, b any) error {
		return fmt.Errorf("%w: the draft model's vocabulary differs from the target's: %s %v vs %v", ErrInvalidParams, what, b, a)
	}
	switch {
	case t.Type != d.Type:
		return bad("type", t.Type, d.Type)
	case t.AddBOS != d.AddBOS || (t.AddBOS && t.BOS != d.BOS):
		return bad("BOS", t.BOS, d.BOS)
	case t.AddEOS != d.AddEOS || t.EOS != d.EOS:
		return bad("EOS", t.EOS, d.EOS)
	case abs(t.NTokens-d.NTokens) > 128:
		return bad("size", t.NTokens, d.NTokens)
	}
	for id := Token(5); int(id) < min(t.NTokens, d.NTokens); id++ { // llama.cpp skips the first 5 too
		a, err := target.TokenText(id)
		if err != nil {
			return err
		}
		b, err := draft.TokenText(id)
		if err != nil {
			return err
		}
		if a != b {
			return bad(fmt.Sprintf("token %d", id), fmt.Sprintf("%q", a), fmt.Sprintf("%q", b))
		}
	}
	return nil
}

func abs(x int) int { return max(x, -x) }

// Draft implements Drafter.
func (d *ModelDrafter) Draft(ctx context.Context, history []Token, limit int) ([]Token, error) {
	if len(history) == 0 || limit <= 0 || len(history)+limit > d.ctx.NCtx() {
		return nil, nil // nothing to draft from, or no room: plain decoding goes on
	}
	// Keep the shared prefix; decode at least the last token, whose logits start the draft.
	n := min(commonPrefixLen(d.held, history), len(history)-1)
	for _, t := range history[n:] {
		if !d.ctx.model.ValidToken(t) {
			return nil, nil // the draft model cannot read it: plain decoding goes on
		}
	}
	if _, err := d.ctx.MemorySeqRemove(0, Pos(n), -1); err != nil {
		return nil, err
	}
	d.held = d.held[:n]
	if err := d.ctx.DecodeTokens(ctx, history[n:], Pos(n), 0); err != nil {
		return nil, d.reset(err)
	}
	d.held = append(d.held, history[n:]...)
	var out []Token
	for {
		tok, sure, err := d.pick()
		if err != nil {
			return nil, d.reset(err)
		}
		if (!sure && len(out) > 0) || int(tok) >= d.targetTokens {
			return out, nil
		}
		out = append(out, tok)
		if len(out) == limit || d.eog(tok) {
			return out, nil
		}
		if err := d.ctx.DecodeTokens(ctx, out[len(out)-1:], Pos(len(d.held)), 0); err != nil {
			return nil, d.reset(err)
		}
		d.held = append(d.held, tok)
	}
}

// reset empties the draft context after a failed decode (its cache is unknown) and
// returns err.
func (d *ModelDrafter) reset(err error) error {
	d.held = d.held[:0]
	d.ctx.MemorySeqRemove(0, -1, -1)
	return err
}

// pick is the draft model's choice after its last decode, and whether it is sure enough.
func (d *ModelDrafter) pick() (Token, bool, error) {
	if d.device != nil {
		tok, err := d.device.Sample(d.ctx, -1)
		return tok, true, err
	}
	return d.ctx.draftPick(d.minProb)
}

// Close frees the draft context. Calling it again is a no-op.
func (d *ModelDrafter) Close() error {
	err := d.ctx.Close()
	if d.device != nil {
		d.device.Close()
	}
	return err
}

func commonPrefixLen(a, b []Token) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

// draftPick returns the most likely token of the last output, and whether its
// probability is at least minProb.
func (c *Context) draftPick(minProb float32) (Token, bool, error) {
	if err := c.enter(); err != nil {
		return 0, false, err
	}
	defer c.mu.Unlock()
	if err := c.outputIndex(-1); err != nil {
		return 0, false, err
	}
	logits := C.lgo_logits_ith(c.ptr, -1, C.bool(c.attached.any()))
	if logits == nil {
		return 0, false, fmt.Errorf("%w: the draft context's logits stayed on the device", ErrNoLogits)
	}
	var sure C.bool
	tok := C.lgo_draft_pick(logits, C.int32_t(c.nVocab), C.float(minProb), &sure)
	return Token(tok), bool(sure), nil
}
