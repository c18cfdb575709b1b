package llama

/*
#include "shim.h"
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"runtime"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"
)

// FinishReason says why a generation ended.
type FinishReason string

const (
	FinishStop      FinishReason = "stop"      // a stop string was generated, or the caller stopped ranging
	FinishEOG       FinishReason = "eog"       // the model generated an end-of-generation token
	FinishLength    FinishReason = "length"    // MaxTokens reached or the context is full
	FinishCancelled FinishReason = "cancelled" // the context.Context was cancelled
	FinishError     FinishReason = "error"     // another error ended it
)

// GenerateParams tunes Generate and GenerateText. The zero value (or nil) generates
// until an end-of-generation token or a full context, in sequence 0.
type GenerateParams struct {
	MaxTokens int      // most tokens to generate; 0: no limit
	Stop      []string // stop strings: generation ends before them, they are never emitted
	IgnoreEOG bool     // keep generating past end-of-generation tokens
	Logprobs  int      // > 0: record the log-probability of each token and of this many alternatives
	Seq       SeqID    // the sequence to generate in
	// Draft, when not nil, decodes speculatively: after each sampled token it proposes
	// up to DraftMax more (0: 16), the model decodes them all in one step, and the
	// sampler keeps those it picks itself, so the output is the same as without a
	// draft. Not with a sampler on the device (SetBackendSampler).
	Draft    Drafter
	DraftMax int

	history []Token      // the sequence's tokens before the prompt, for Draft (ChatSession)
	media   *MediaPrompt // chunks to evaluate before the prompt (GenerateMedia)
}

// TokenLogprob is a token with its log-probability under the model's distribution.
type TokenLogprob struct {
	Token   Token
	Logprob float32
}

// Generated is one generated token.
type Generated struct {
	Token   Token
	Logprob float32        // with GenerateParams.Logprobs > 0
	Top     []TokenLogprob // the Logprobs most likely tokens at this step, most likely first
}

// GenerateResult summarises a generation.
type GenerateResult struct {
	PromptTokens    int // media tokens included
	MediaTokens     int // of the prompt's images and audio (GenerateMedia)
	GeneratedTokens int
	DeviceSampling  bool // the tokens were picked on the device (see Generate)
	FinishReason    FinishReason
	Err             error         // what ended it with FinishCancelled or FinishError
	Load            time.Duration // how long the model took to load
	Prompt          time.Duration // prompt processing
	Generation      time.Duration // from the first sampled token to the end
	Logprobs        []Generated   // every generated token, with GenerateParams.Logprobs > 0
	// Drafted tokens were proposed by GenerateParams.Draft; DraftAccepted of them were
	// what the sampler picked (each saved a decode step).
	Drafted, DraftAccepted int
}

// PromptTokensPerSecond is the prompt-processing speed.
func (r *GenerateResult) PromptTokensPerSecond() float64 { return perSecond(r.PromptTokens, r.Prompt) }

// GenerationTokensPerSecond is the generation speed.
func (r *GenerateResult) GenerationTokensPerSecond() float64 {
	return perSecond(r.GeneratedTokens, r.Generation)
}

// LastGeneration summarises the last generation (Generate, GenerateText) that ran on
// the context, once its iteration has ended.
func (c *Context) LastGeneration() GenerateResult {
	c.lastMu.Lock()
	defer c.lastMu.Unlock()
	return c.lastGen
}

func (c *Context) setLastGeneration(r *GenerateResult) {
	c.lastMu.Lock()
	defer c.lastMu.Unlock()
	c.lastGen = *r
}

// Generate decodes prompt after what the sequence already holds, then samples tokens
// with s, yielding each. Ranging over it runs the generation; it can be ranged over
// once. With stop strings, tokens are held back while their text may start one, and a
// token whose text reaches into a stop string is not yielded. Errors (bad input, a
// prompt that does not fit, cancellation matching ErrAborted and ctx's cause) come as
// the last value.
//
// The context and the sampler are busy (ErrContextBusy, ErrSamplerBusy for other
// callers) during the iteration.
// Afterwards the sequence's cache holds the prompt and every yielded token except the
// last one when the generation ended by length (it was sampled, not decoded); an
// end-of-generation token is neither yielded nor decoded.
//
// On a context whose output layer runs on a GPU, a sampler that is Greedy alone or led
// by TopK picks on the device by itself unless Logprobs or Draft are set (the same
// tokens, without copying every logit to the CPU; see SetBackendSampler): Logits of
// the generation's last decode then return ErrNoLogits. Decode and the other calls that
// fill the cache bring the logits back.
func (c *Context) Generate(ctx context.Context, prompt []Token, s *Sampler, opts *GenerateParams) iter.Seq2[Generated, error] {
	return func(yield func(Generated, error) bool) {
		c.generate(ctx, prompt, s, opts, false, func(tokens []Generated, _ []byte, _ bool) bool {
			for _, g := range tokens {
				if !yield(g, nil) {
					return false
				}
			}
			return true
		}, func(err error) { yield(Generated{}, err) })
	}
}

// GenerateText is Generate yielding text: each value is valid UTF-8 (a piece ending
// inside a character waits for the rest; bytes that cannot form one become U+FFFD),
// stop strings are never emitted, and special
// tokens render as nothing. The prompt is tokenized with ParseSpecial (special-token
// text such as "<|im_start|>" becomes the token), and AddSpecial when the sequence is
// empty: a second call continues the same sequence without a new BOS.
func (c *Context) GenerateText(ctx context.Context, prompt string, s *Sampler, opts *GenerateParams) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		var seq SeqID
		if opts != nil {
			seq = opts.Seq
		}
		flags := ParseSpecial
		if _, last, err := c.MemorySeqPosRange(seq); err != nil {
			yield("", err)
			return
		} else if last < 0 {
			flags |= AddSpecial // BOS only at the start of a sequence
		}
		tokens, err := c.model.Tokenize(prompt, flags)
		if err != nil {
			yield("", err)
			return
		}
		for piece, err := range c.generateText(ctx, tokens, s, opts) {
			if !yield(piece, err) {
				return
			}
		}
	}
}

// generateText is Generate of tokens yielding text (see GenerateText).
func (c *Context) generateText(ctx context.Context, tokens []Token, s *Sampler, opts *GenerateParams) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		var pending []byte // bytes of an incomplete UTF-8 character
		c.generate(ctx, tokens, s, opts, true, func(_ []Generated, text []byte, final bool) bool {
			pending = append(pending, text...)
			n := len(pending)
			if !final {
				n = completeUTF8(pending)
			}
			if n == 0 {
				return true
			}
			out := string(pending[:n])
			if !utf8.ValidString(out) { // bytes that can never form a character (models emit them)
				out = strings.ToValidUTF8(out, "\uFFFD")
			}
			pending = append(pending[:0], pending[n:]...)
			return yield(out, nil)
		}, func(err error) { yield("", err) })
	}
}

// completeUTF8 is the length of b without a trailing incomplete UTF-8 sequence.
func completeUTF8(b []byte) int {
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				return i
			}
			break
		}
	}
	return len(b)
}

// heldToken is a generated token held back for stop strings, with the end of its text.
type heldToken struct {
	g   Generated
	end int
}

// generate is the loop behind Generate and GenerateText. It calls emit with the tokens
// and text bytes it releases (text only when wantText or stop strings need it); final
// marks the last call. fail receives the error that ended the generation, if any.
func (c *Context) generate(ctx context.Context, prompt []Token, s *Sampler, opts *GenerateParams, wantText bool,
	emit func(tokens []Generated, text []byte, final bool) bool, fail func(error)) {
	var o GenerateParams
	if opts != nil {
		o = *opts
	}
	res := &GenerateResult{}
	stops := newStopMatcher(o.Stop)
	needText := wantText || stops != nil
	var (
		text    []byte      // generated text, when needed
		sent    int         // bytes of text already emitted
		held    []heldToken // tokens not yet emitted (with stop strings)
		one     [1]Generated
		emitted = true // false once the consumer stopped ranging
	)
	// release emits the held tokens whose text ends within upto, and the text up to it.
	release := func(upto int, final bool) {
		n := 0
		for n < len(held) && held[n].end <= upto {
			n++
		}
		for i := range n {
			one[0] = held[i].g
			if emitted && !emit(one[:], nil, false) {
				emitted = false
			}
		}
		held = append(held[:0], held[n:]...)
		if emitted && (upto > sent || final) && wantText {
			emitted = emit(nil, text[sent:upto], final)
		}
		sent = max(sent, upto)
	}
	finish := func(reason FinishReason, err error) {
		res.FinishReason, res.Err = reason, err
		if reason == FinishEOG || reason == FinishLength {
			release(len(text), true) // nothing can start a stop string any more
		}
		if err != nil {
			fail(err)
		}
	}
	if err := c.enter(); err != nil {
		finish(FinishError, err)
		return
	}
	defer c.mu.Unlock()
	defer c.setLastGeneration(res) // after the deferred timing below
	// A context whose layers all run on GPUs decodes on the caller's thread: every call
	// of the loop from one OS thread keeps its CPU workers (the input embeddings) one
	// team. Others hand their decodes to their own thread (see computeThread).
	if c.thread == nil {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
	}
	res.Load = c.model.loadDuration
	if err := c.checkGenerate(prompt, s, &o); err != nil {
		finish(FinishError, err)
		return
	}
	if err := s.claim(c); err != nil {
		finish(FinishError, err)
		return
	}
	defer s.use.Unlock()
	c.placeSampling(o.Seq, s, &o)
	res.DeviceSampling = c.attached.onDevice(o.Seq)
	if err := context.Cause(ctx); err != nil {
		finish(FinishCancelled, aborted(err))
		return
	}
	defer c.arm(ctx)()
	failed := func(err error) {
		if errors.Is(err, ErrAborted) {
			finish(FinishCancelled, err)
		} else {
			finish(FinishError, err)
		}
	}
	decodeFailed := func(err error) {
		if errors.Is(err, ErrContextFull) {
			finish(FinishLength, nil)
		} else {
			failed(err)
		}
	}

	_, last, _ := c.seqRange(o.Seq)
	pos := last + 1
	start := time.Now()
	if o.media != nil {
		var err error
		if pos, err = o.media.eval(c, pos, o.Seq); err != nil {
			failed(err)
			return
		}
		res.PromptTokens, res.MediaTokens = o.media.nTokens-len(prompt), o.media.nMedia
	}
	if err := c.decodeSeq(ctx, prompt, pos, o.Seq); err != nil {
		failed(err)
		return
	}
	pos += Pos(len(prompt))
	res.PromptTokens += len(prompt)
	res.Prompt = time.Since(start)
	start = time.Now()
	defer func() { res.Generation = time.Since(start) }()

	// Speculation: pending are drafted tokens decoded after the last sampled one, at
	// positions pos, pos+1, ...; row is the output row to sample next (-1: the last).
	var (
		history []Token
		pending []Token
		batch   []Token
		row     = -1
	)
	if o.Draft != nil {
		history = append(append(make([]Token, 0, len(o.history)+len(prompt)+256), o.history...), prompt...)
		defer func() { // the cache keeps no drafted token the sampler did not take
			if len(pending) > 0 {
				C.llama_memory_seq_rm(C.llama_get_memory(c.ptr), C.llama_seq_id(o.Seq), C.llama_pos(pos), -1)
			}
		}()
	}
	for {
		tok, err := s.sampleLocked(c, row)
		if err != nil {
			failed(err)
			return
		}
		if !o.IgnoreEOG && bool(C.llama_vocab_is_eog(c.model.vocab, C.llama_token(tok))) {
			finish(FinishEOG, nil)
			return
		}
		g := Generated{Token: tok}
		if o.Logprobs > 0 {
			if g, err = c.logprobs(row, tok, o.Logprobs); err != nil {
				failed(err)
				return
			}
			res.Logprobs = append(res.Logprobs, g)
		}
		res.GeneratedTokens++
		if !needText {
			one[0] = g
			if !emit(one[:], nil, false) {
				finish(FinishStop, nil)
				return
			}
		} else {
			from := len(text)
			text = appendPiece(c.model.vocab, text, tok, false)
			held = append(held, heldToken{g, len(text)})
			safe, hit := len(text), false
			if stops != nil {
				safe, hit = stops.check(text, from)
			}
			if hit {
				release(safe, true) // what precedes the stop string; the rest is dropped
				held = held[:0]
				text = text[:safe]
				finish(FinishStop, nil)
				return
			}
			release(safe, false)
			if !emitted {
				finish(FinishStop, nil)
				return
			}
			if sent >= 4096 { // emitted text cannot take part in a stop string: drop it
				text = append(text[:0], text[sent:]...)
				for i := range held {
					held[i].end -= sent
				}
				sent = 0
			}
		}
		if int(pos) >= c.nCtxSeq() || (o.MaxTokens > 0 && res.GeneratedTokens >= o.MaxTokens) {
			finish(FinishLength, nil) // the last token needs no decode
			return
		}
		if o.Draft == nil {
			if err := c.decodeSeq(ctx, []Token{tok}, pos, o.Seq); err != nil {
				decodeFailed(err)
				return
			}
			pos++
			continue
		}
		history = append(history, tok)
		if len(pending) > 0 && pending[0] == tok { // drafted right: decoded already, its logits are the next row
			pending = pending[1:]
			res.DraftAccepted++
			pos++
			row++
			continue
		}
		if len(pending) > 0 { // drafted wrong: the rest of the draft leaves the cache
			C.llama_memory_seq_rm(C.llama_get_memory(c.ptr), C.llama_seq_id(o.Seq), C.llama_pos(pos), -1)
		}
		if pending, err = c.draft(ctx, &o, history, pos, res.GeneratedTokens); err != nil {
			failed(err)
			return
		}
		res.Drafted += len(pending)
		batch = append(append(batch[:0], tok), pending...)
		if err := c.decodeRows(ctx, batch, pos, o.Seq); err != nil {
			pending = nil // nothing of the batch is in the cache
			decodeFailed(err)
			return
		}
		pos++
		row = 0
	}
}

// draft asks o.Draft for the tokens to decode after the last of history, which goes
// at pos: as many as fit the batch, the sequence and the tokens still to generate.
func (c *Context) draft(ctx context.Context, o *GenerateParams, history []Token, pos Pos, generated int) ([]Token, error) {
	n := o.DraftMax
	if n == 0 {
		n = 16
	}
	n = min(n, c.nBatch-1, c.nCtxSeq()-int(pos)-1)
	if o.MaxTokens > 0 {
		n = min(n, o.MaxTokens-generated-1)
	}
	if n <= 0 {
		return nil, nil
	}
	d, err := o.Draft.Draft(ctx, history, n)
	if err != nil {
		return nil, fmt.Errorf("draft: %w", err)
	}
	if len(d) > n {
		return nil, fmt.Errorf("%w: the drafter returned %d tokens, asked for at most %d", ErrInvalidParams, len(d), n)
	}
	if err := c.model.checkTokens(d); err != nil {
		return nil, fmt.Errorf("draft: %w", err)
	}
	return d, nil
}

// decodeRows decodes tokens (at most NBatch) of one sequence from pos on, with logits
// for every one. The context is claimed and armed.
func (c *Context) decodeRows(ctx context.Context, tokens []Token, pos Pos, seq SeqID) error {
	b, err := c.scratchBatch()
	if err != nil {
		return err
	}
	b.Clear()
	for i, t := range tokens {
		if err := b.Add(t, pos+Pos(i), true, seq); err != nil {
			return err
		}
	}
	return c.run(ctx, b, false)
}

func (c *Context) checkGenerate(prompt []Token, s *Sampler, o *GenerateParams) error {
	if s == nil {
		return fmt.Errorf("%w: a generation needs a Sampler", ErrInvalidParams)
	}
	if len(prompt) == 0 {
		return fmt.Errorf("%w: empty prompt", ErrInvalidBatch)
	}
	for _, t := range prompt {
		if err := c.model.checkToken(t); err != nil {
			return err
		}
	}
	if o.MaxTokens < 0 || o.Logprobs < 0 || o.Logprobs > 1000 {
		return invalidParam("MaxTokens %d and Logprobs %d must be >= 0 (Logprobs at most 1000)", o.MaxTokens, o.Logprobs)
	}
	for _, stop := range o.Stop {
		if stop == "" {
			return invalidParam("empty stop string")
		}
	}
	if o.Seq < 0 || int(o.Seq) >= c.nSeqMax {
		return invalidParam("sequence id %d out of range [0, %d)", o.Seq, c.nSeqMax)
	}
	if o.Draft != nil && (o.DraftMax < 0 || c.attached.userOwns(o.Seq)) {
		return invalidParam("speculative decoding needs DraftMax >= 0 (got %d) and a sequence that samples on the CPU (sequence %d: SetBackendSampler)", o.DraftMax, o.Seq)
	}
	_, last, err := c.seqRange(o.Seq)
	if err != nil {
		return err
	}
	n := len(prompt)
	if o.media != nil {
		n = o.media.nTokens
	}
	if need := int(last) + 1 + n; need > c.nCtxSeq() {
		return fmt.Errorf("%w: the prompt needs %d positions, the sequence holds %d", ErrContextFull, need, c.nCtxSeq())
	}
	return nil
}

// seqRange is MemorySeqPosRange for a claimed context.
func (c *Context) seqRange(seq SeqID) (lo, hi Pos, err error) {
	mem := C.llama_get_memory(c.ptr)
	if mem == nil {
		return -1, -1, errNoMemory
	}
	return Pos(C.llama_memory_seq_pos_min(mem, C.llama_seq_id(seq))), Pos(C.llama_memory_seq_pos_max(mem, C.llama_seq_id(seq))), nil
}

// nCtxSeq is the number of positions one sequence may hold.
func (c *Context) nCtxSeq() int { return int(C.llama_n_ctx_seq(c.ptr)) }

// Logprobs returns tok with its log-probability in the distribution of output i of the
// last decode (a batch index, or negative from the end as in Logits), and the top most
// likely tokens of that distribution (at most 1000), most likely first: what
// GenerateParams.Logprobs records, for loops of your own (the engine's requests).
func (c *Context) Logprobs(i int, tok Token, top int) (Generated, error) {
	if err := c.enter(); err != nil {
		return Generated{}, err
	}
	defer c.mu.Unlock()
	if err := c.model.checkToken(tok); err != nil {
		return Generated{}, err
	}
	if top < 0 || top > 1000 {
		return Generated{}, invalidParam("top %d: want 0 to 1000", top)
	}
	if err := c.outputIndex(i); err != nil {
		return Generated{}, err
	}
	return c.logprobs(i, tok, top)
}

// logprobs reads the log-probabilities of output row's distribution (-1: the last).
func (c *Context) logprobs(row int, tok Token, top int) (Generated, error) {
	logits := C.lgo_logits_ith(c.ptr, C.int32_t(row), C.bool(c.attached.any()))
	g := Generated{Token: tok}
	if logits == nil {
		return g, fmt.Errorf("%w: log-probabilities need the logits, and they stayed on the device (SetBackendSampler)", ErrNoLogits)
	}
	g.Logprob = float32(C.lgo_logprob(logits, C.int32_t(c.nVocab), C.llama_token(tok)))
	if top == 0 {
		return g, nil
	}
	ids := make([]C.llama_token, top)
	lps := make([]C.float, top)
	C.lgo_top_logprobs(logits, C.int32_t(c.nVocab), C.int32_t(top), &ids[0], &lps[0])
	g.Top = make([]TokenLogprob, top)
	for i := range top {
		g.Top[i] = TokenLogprob{Token(ids[i]), float32(lps[i])}
	}
	return g, nil
}

// stopMatcher finds stop strings in generated text and tells how much of it cannot
// be the start of one.
type stopMatcher struct {
	stops   []string
	longest int
}

func newStopMatcher(stops []string) *stopMatcher {
	if len(stops) == 0 {
		return nil
	}
	m := &stopMatcher{stops: stops}
	for _, s := range stops {
		m.longest = max(m.longest, len(s))
	}
	return m
}

// check looks for stop strings in text that end after offset from (the text before
// was checked already). It returns how many leading bytes are safe to release and
// whether a stop string was found (then the bytes before it are safe, nothing after).
func (m *stopMatcher) check(text []byte, from int) (safe int, hit bool) {
	s := unsafe.String(unsafe.SliceData(text), len(text))
	window := max(0, from-m.longest+1)
	first := -1
	for _, stop := range m.stops {
		if i := strings.Index(s[window:], stop); i >= 0 && (first < 0 || window+i < first) {
			first = window + i
		}
	}
	if first >= 0 {
		return first, true
	}
	// Hold back the longest suffix that is a proper prefix of a stop string.
	hold := 0
	for _, stop := range m.stops {
		for n := min(len(stop)-1, len(s)); n > hold; n-- {
			if strings.HasSuffix(s, stop[:n]) {
				hold = n
				break
			}
		}
	}
	return len(s) - hold, false
}
