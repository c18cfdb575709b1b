package llama

/*
#include "shim.h"
*/
import "C"

import (
	"context"
	"fmt"
	"math"
	"unsafe"
)

// EmbedParams configures Embed, EmbedTokens and TokenEmbeddings. nil means the zero value.
type EmbedParams struct {
	// Normalize scales every vector to unit Euclidean (L2) norm, as llama.cpp's
	// embedding tool does by default and as cosine similarity expects.
	Normalize bool
	// NoAddSpecial tokenizes texts without the special tokens the vocabulary adds
	// (BOS or [CLS] before, EOS or [SEP] after). Embedding models are trained with them.
	NoAddSpecial bool
	// ParseSpecial turns special-token text inside the inputs (e.g. "[SEP]") into the
	// special tokens. Off by default, so user text cannot inject control tokens.
	ParseSpecial bool
}

// Embed returns one embedding per text, pooled the way the context's pooling type says
// (the model's own, e.g. CLS for bge, or ContextParams.Pooling: mean, CLS or last).
// Texts are packed into as few decodes as possible, one sequence per text and up to
// NSeqMax texts per decode; the context's memory is cleared before each decode.
//
// The context needs Embeddings, and a pooling type other than PoolingNone (use
// TokenEmbeddings) and PoolingRank (use Rerank). Every text must tokenize to at least
// one and at most EmbedMaxTokens tokens (ErrInputTooLong otherwise); raise NUBatch (and
// NBatch) for longer texts. Decoder models embed several texts per decode only when
// their KV cache is unified (ContextParams.KVUnified) or NSeqMax is 1: a split cache
// would spread one text over several micro-batches and break pooling, so they
// then decode one text at a time.
func (c *Context) Embed(ctx context.Context, texts []string, opts *EmbedParams) ([][]float32, error) {
	o := embedOpts(opts)
	inputs, err := c.model.tokenizeInputs(texts, o)
	if err != nil {
		return nil, err
	}
	return c.EmbedTokens(ctx, inputs, &o)
}

// EmbedTokens is Embed for inputs that are already tokens (include any special tokens
// the model expects). The tokenization options of opts are ignored.
func (c *Context) EmbedTokens(ctx context.Context, inputs [][]Token, opts *EmbedParams) ([][]float32, error) {
	o := embedOpts(opts)
	if err := c.enter(); err != nil {
		return nil, err
	}
	defer c.mu.Unlock()
	switch {
	case !c.embeddings:
		return nil, errNoEmbeddings
	case c.pooling == PoolingNone:
		return nil, invalidParam("the context has pooling none: use TokenEmbeddings for per-token vectors, or set ContextParams.Pooling")
	case c.pooling == PoolingRank:
		return nil, invalidParam("the context has rank pooling (a reranker): use Rerank")
	}
	out := make([][]float32, len(inputs))
	err := c.embedBatches(ctx, inputs, func(in, seq, _ int) error {
		v, err := c.pooledOutput(seq, c.nEmbdOut)
		if err != nil {
			return err
		}
		if o.Normalize {
			normalizeL2(v)
		}
		out[in] = v
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// TokenEmbeddings returns the embedding of every token of every text: result[i][j] is
// token j of text i (tokenized as opts says). The context needs Embeddings and
// PoolingNone; texts are packed into decodes as Embed does.
func (c *Context) TokenEmbeddings(ctx context.Context, texts []string, opts *EmbedParams) ([][][]float32, error) {
	o := embedOpts(opts)
	inputs, err := c.model.tokenizeInputs(texts, o)
	if err != nil {
		return nil, err
	}
	if err := c.enter(); err != nil {
		return nil, err
	}
	defer c.mu.Unlock()
	switch {
	case !c.embeddings:
		return nil, errNoEmbeddings
	case c.pooling != PoolingNone:
		return nil, invalidParam("the context pools embeddings (%s): per-token embeddings need PoolingNone", c.pooling)
	}
	out := make([][][]float32, len(inputs))
	err = c.embedBatches(ctx, inputs, func(in, _, first int) error {
		vecs := make([][]float32, len(inputs[in]))
		for j := range vecs {
			p := C.llama_get_embeddings_ith(c.ptr, C.int32_t(first+j))
			if p == nil {
				return fmt.Errorf("%w: llama.cpp returned no embedding for token %d of input %d", ErrNoLogits, j, in)
			}
			v := append([]float32(nil), unsafe.Slice((*float32)(unsafe.Pointer(p)), c.nEmbdOut)...)
			if o.Normalize {
				normalizeL2(v)
			}
			vecs[j] = v
		}
		out[in] = vecs
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// EmbedMaxTokens is the most tokens one input to Embed, EmbedTokens, TokenEmbeddings or
// Rerank may have in this context (0 after Close): bounded by NUBatch for encoders and
// pooled embeddings (llama.cpp computes a sequence in one micro-batch), by NBatch
// otherwise, by the context per sequence, and for BERT by its trained positions.
func (c *Context) EmbedMaxTokens() int {
	if err := c.enter(); err != nil {
		return 0
	}
	defer c.mu.Unlock()
	return c.embedLimits().perInput
}

// embedLimits says how inputs may be packed into decodes in this context.
type embedLimits struct {
	encode   bool // the context has no memory (BERT-like encoders): llama_encode
	perInput int  // most tokens of one input
	perBatch int  // most tokens of one decode
	seqs     int  // most inputs of one decode
}

func (c *Context) embedLimits() embedLimits {
	pooled := c.pooling != PoolingNone
	l := embedLimits{seqs: c.nSeqMax}
	if C.llama_get_memory(c.ptr) == nil {
		// llama_encode computes the whole batch in one graph and asserts n_ubatch >= n_tokens.
		l.encode = true
		l.perBatch = c.nUBatch
		l.perInput = c.nUBatch
		if c.model.info.Architecture == "bert" && c.model.info.NCtxTrain > 0 {
			// learned absolute positions: a row past the table would abort in get_rows
			l.perInput = min(l.perInput, c.model.info.NCtxTrain)
		}
		return l
	}
	nCtxSeq := int(C.llama_n_ctx_seq(c.ptr))
	l.perBatch = min(c.nBatch, c.nCtx)
	if pooled {
		// pooling reads each sequence from one micro-batch
		l.perBatch = min(l.perBatch, c.nUBatch)
	}
	l.perInput = min(l.perBatch, nCtxSeq)
	if pooled && c.nSeqMax > 1 && nCtxSeq < c.nCtx {
		// a cache split per sequence makes llama.cpp split batches evenly across
		// sequences, which would spread an input over several micro-batches
		l.seqs = 1
	}
	return l
}

// embedBatches decodes the inputs packed into batches (input i of a batch is sequence
// i-first) and calls read for each input of a batch after its decode, with the input's
// index, sequence id and batch index of its first token. The context is claimed.
func (c *Context) embedBatches(ctx context.Context, inputs [][]Token, read func(input, seq, first int) error) error {
	if len(inputs) == 0 {
		return invalidParam("no inputs to embed")
	}
	l := c.embedLimits()
	for i, in := range inputs {
		if len(in) == 0 {
			return invalidParam("input %d is empty", i)
		}
		if len(in) > l.perInput {
			return fmt.Errorf("%w: input %d has %d tokens, this context embeds at most %d per input (raise NUBatch/NBatch or NCtx, or truncate)", ErrInputTooLong, i, len(in), l.perInput)
		}
		for _, t := range in {
			if t < 0 || int(t) >= c.nVocab {
				return fmt.Errorf("%w: token %d in input %d (vocabulary has %d tokens)", ErrInvalidToken, t, i, c.nVocab)
			}
		}
	}
	b, err := c.scratchBatch()
	if err != nil {
		return err
	}
	defer c.arm(ctx)()
	mem := C.llama_get_memory(c.ptr)
	for start := 0; start < len(inputs); {
		b.Clear()
		end := start
		for end < len(inputs) && end-start < l.seqs && b.Len()+len(inputs[end]) <= l.perBatch {
			for j, t := range inputs[end] {
				if err := b.Add(t, Pos(j), true, SeqID(end-start)); err != nil {
					return err
				}
			}
			end++
		}
		if mem != nil {
			C.llama_memory_clear(mem, C.bool(true))
		}
		if err := c.run(ctx, b, l.encode); err != nil {
			return err
		}
		first := 0
		for i := start; i < end; i++ {
			if err := read(i, i-start, first); err != nil {
				return err
			}
			first += len(inputs[i])
		}
		start = end
	}
	if mem != nil {
		C.llama_memory_clear(mem, C.bool(true))
	}
	return nil
}

// memoryClear empties the claimed context's memory, if it has any.
func (c *Context) memoryClear() {
	if mem := C.llama_get_memory(c.ptr); mem != nil {
		C.llama_memory_clear(mem, C.bool(true))
	}
}

// pooledOutput copies n floats of the pooled output of sequence seq after a decode.
func (c *Context) pooledOutput(seq, n int) ([]float32, error) {
	p := C.llama_get_embeddings_seq(c.ptr, C.llama_seq_id(seq))
	if p == nil {
		return nil, fmt.Errorf("%w: no pooled embedding for sequence %d", ErrNoLogits, seq)
	}
	return append([]float32(nil), unsafe.Slice((*float32)(unsafe.Pointer(p)), n)...), nil
}

func (m *Model) tokenizeInputs(texts []string, o EmbedParams) ([][]Token, error) {
	if len(texts) == 0 {
		return nil, invalidParam("no texts to embed")
	}
	var flags TokenizeFlags
	if !o.NoAddSpecial {
		flags |= AddSpecial
	}
	if o.ParseSpecial {
		flags |= ParseSpecial
	}
	inputs := make([][]Token, len(texts))
	for i, s := range texts {
		if s == "" {
			return nil, invalidParam("text %d is empty", i)
		}
		toks, err := m.Tokenize(s, flags)
		if err != nil {
			return nil, fmt.Errorf("text %d: %w", i, err)
		}
		inputs[i] = toks
	}
	return inputs, nil
}

func embedOpts(o *EmbedParams) EmbedParams {
	if o == nil {
		return EmbedParams{}
	}
	return *o
}

// normalizeL2 scales v to unit Euclidean norm (a zero vector stays zero).
func normalizeL2(v []float32) {
	var sum float64
	for _, x := range v {
		sum += float64(x) * float64(x)
	}
	if sum == 0 {
		return
	}
	inv := 1 / math.Sqrt(sum)
	for i, x := range v {
		v[i] = float32(float64(x) * inv)
	}
}

// String names the pooling type as llama.cpp's tools do.
func (p PoolingType) String() string {
	switch p {
	case PoolingDefault:
		return "default"
	case PoolingNone:
		return "none"
	case PoolingMean:
		return "mean"
	case PoolingCLS:
		return "cls"
	case PoolingLast:
		return "last"
	case PoolingRank:
		return "rank"
	}
	return fmt.Sprintf("PoolingType(%d)", int(p))
}

// ParsePoolingType parses a pooling name as llama.cpp's --pooling flag takes it
// ("none", "mean", "cls", "last", "rank"; "" or "default": the model's).
func ParsePoolingType(s string) (PoolingType, error) {
	for p := PoolingDefault; p <= PoolingRank; p++ {
		if p.String() == s {
			return p, nil
		}
	}
	if s == "" {
		return PoolingDefault, nil
	}
	return 0, invalidParam("unknown pooling type %q (none, mean, cls, last, rank)", s)
}

// Pooling is the context's pooling type as llama.cpp resolved it (never PoolingDefault).
func (c *Context) Pooling() PoolingType { return c.pooling }
