package llama

/*
#include "shim.h"
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"
)

// Decode runs the model on a batch, appending its tokens to the KV cache of their
// sequences. Cancelling ctx aborts the computation between graph nodes on the CPU
// (between micro-batches on GPUs); the error then matches ErrAborted and ctx's cause,
// and micro-batches already computed stay in the cache (see MemorySeqPosMax).
// Other failures: ErrContextFull when the cache has no room, ErrInvalidBatch and
// ErrInvalidToken for bad input (checked before llama.cpp sees it), *DecodeError.
func (c *Context) Decode(ctx context.Context, b *Batch) error {
	if err := c.enter(); err != nil {
		return err
	}
	defer c.mu.Unlock()
	c.dropAutoSampling(-1)
	defer c.arm(ctx)()
	return c.run(ctx, b, false)
}

// Encode runs the encoder of an encoder-decoder or embedding model on a batch, without
// using the KV cache. Errors are as for Decode.
func (c *Context) Encode(ctx context.Context, b *Batch) error {
	if err := c.enter(); err != nil {
		return err
	}
	defer c.mu.Unlock()
	c.dropAutoSampling(-1)
	defer c.arm(ctx)()
	return c.run(ctx, b, true)
}

// DecodeTokens decodes tokens of one sequence at positions pos, pos+1, ..., split into
// batches of at most NBatch tokens; only the last token produces logits (read them
// with Logits(-1)). It is the usual way to feed a prompt.
func (c *Context) DecodeTokens(ctx context.Context, tokens []Token, pos Pos, seq SeqID) error {
	if err := c.enter(); err != nil {
		return err
	}
	defer c.mu.Unlock()
	if len(tokens) == 0 {
		return fmt.Errorf("%w: no tokens", ErrInvalidBatch)
	}
	if seq < 0 || int(seq) >= c.nSeqMax {
		return fmt.Errorf("%w: sequence id %d out of range [0, %d)", ErrInvalidBatch, seq, c.nSeqMax)
	}
	c.dropAutoSampling(-1)
	defer c.arm(ctx)()
	return c.decodeSeq(ctx, tokens, pos, seq)
}

// scratchBatch is the context's reusable batch of NBatch tokens, one sequence each.
func (c *Context) scratchBatch() (*Batch, error) {
	if c.scratch == nil {
		b, err := NewBatch(c.nBatch, 1)
		if err != nil {
			return nil, err
		}
		c.scratch = b
	}
	return c.scratch, nil
}

// arm makes cancelling ctx abort the claimed context's computations until the
// returned disarm is called.
func (c *Context) arm(ctx context.Context) (disarm func()) {
	c.epoch++
	if c.epoch <= 0 {
		c.epoch = 1
	}
	e := c.epoch
	atomic.StoreInt32((*int32)(unsafe.Pointer(&c.abort.current)), e)
	if ctx.Done() == nil {
		return disarmed
	}
	// When ctx ends during or before the call, the callback may be running as disarm
	// runs: wait for it, so that its store into c.abort (C memory that Close frees once
	// it holds c.mu) lands before the claim ends. Not waiting corrupted the C heap.
	done := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(done)
		atomic.StoreInt32((*int32)(unsafe.Pointer(&c.abort.aborted)), e)
	})
	return func() {
		if !stop() {
			<-done
		}
	}
}

func disarmed() {}

// decodeSeq decodes tokens of one sequence from pos on, in batches of NBatch, with
// logits for the last token only. The context is claimed and armed.
func (c *Context) decodeSeq(ctx context.Context, tokens []Token, pos Pos, seq SeqID) error {
	b, err := c.scratchBatch()
	if err != nil {
		return err
	}
	for start := 0; start < len(tokens); start += c.nBatch {
		end := min(start+c.nBatch, len(tokens))
		b.Clear()
		for i, t := range tokens[start:end] {
			if err := b.Add(t, pos+Pos(start+i), start+i == len(tokens)-1, seq); err != nil {
				return err
			}
		}
		if err := c.run(ctx, b, false); err != nil {
			return err
		}
	}
	return nil
}

// run decodes or encodes a batch with the context claimed and armed.
func (c *Context) run(ctx context.Context, b *Batch, encode bool) error {
	c.outputs, c.nOutputs = c.outputs[:0], 0
	if err := b.validate(c.nVocab, c.nBatch, c.nSeqMax); err != nil {
		return err
	}
	if err := c.attached.checkOutputs(b); err != nil {
		return err
	}
	if c.noMemory && b.Len() > c.nUBatch {
		return fmt.Errorf("%w: %d tokens: a model without KV cache takes at most NUBatch (%d) per call", ErrInvalidBatch, b.Len(), c.nUBatch)
	}
	if c.maxPos > 0 {
		for _, p := range b.pos[:b.Len()] {
			if p >= c.maxPos {
				return fmt.Errorf("%w: position %d: the model's learned positions end at %d", ErrInvalidBatch, p, c.maxPos-1)
			}
		}
	}
	if err := context.Cause(ctx); err != nil {
		return aborted(err)
	}
	if err := c.model.rpc.err(); err != nil { // a failed RPC worker holds layers (rpc.go)
		return err
	}
	var rc C.int32_t
	op := "decode"
	if encode {
		op = "encode"
	}
	switch {
	case c.thread != nil:
		c.job = computeJob{ctx: c.ptr, batch: b.c, encode: encode}
		c.thread.run(&c.job)
		rc = c.job.rc
	case encode:
		rc = C.llama_encode(c.ptr, b.c)
	default:
		rc = C.llama_decode(c.ptr, b.c)
	}
	if err := c.rpcSettle(); err != nil {
		return err
	}
	switch rc {
	case 0:
		c.recordOutputs(b)
		return nil
	case 1:
		return ErrContextFull
	case 2:
		if err := context.Cause(ctx); err != nil {
			return aborted(err)
		}
		return aborted(ErrClosed)
	default:
		return &DecodeError{Op: op, Code: int(rc)}
	}
}

func (c *Context) recordOutputs(b *Batch) {
	n := b.Len()
	if cap(c.outputs) < n {
		c.outputs = make([]int32, n, c.nBatch)
	}
	c.outputs = c.outputs[:n]
	for i := range n {
		if b.output[i] != 0 {
			c.outputs[i] = int32(c.nOutputs)
			c.nOutputs++
		} else {
			c.outputs[i] = -1
		}
	}
}

// outputIndex checks that batch index i (or, negative, the i-th output from the end)
// produced an output in the last decode.
func (c *Context) outputIndex(i int) error {
	if i < 0 {
		if -i > c.nOutputs {
			return fmt.Errorf("%w: index %d but the last batch had %d outputs", ErrNoLogits, i, c.nOutputs)
		}
		return nil
	}
	if i >= len(c.outputs) || c.outputs[i] < 0 {
		return fmt.Errorf("%w: batch index %d", ErrNoLogits, i)
	}
	return nil
}

// Synchronize waits until the device finished the work queued by the last decode
// (reading logits does this implicitly); for timing measurements.
func (c *Context) Synchronize() error {
	if err := c.enter(); err != nil {
		return err
	}
	defer c.mu.Unlock()
	C.llama_synchronize(c.ptr)
	return nil
}

// Logits returns a copy of the logits (one per vocabulary token) of batch index i of
// the last decode; i = -1 is the last output.
func (c *Context) Logits(i int) ([]float32, error) {
	if err := c.enter(); err != nil {
		return nil, err
	}
	defer c.mu.Unlock()
	v, err := c.logitsView(i)
	if err != nil {
		return nil, err
	}
	return append([]float32(nil), v...), nil
}

// LogitsView is Logits without the copy: the slice points into llama.cpp's buffer and is
// valid only until the next call on the context (Decode, Close, ...). Never keep it.
func (c *Context) LogitsView(i int) ([]float32, error) {
	if err := c.enter(); err != nil {
		return nil, err
	}
	defer c.mu.Unlock()
	return c.logitsView(i)
}

func (c *Context) logitsView(i int) ([]float32, error) {
	if err := c.outputIndex(i); err != nil {
		return nil, err
	}
	p := C.lgo_logits_ith(c.ptr, C.int32_t(i), C.bool(c.attached.any()))
	if p == nil {
		return nil, fmt.Errorf("%w: index %d (sampled on the device, or no logits from llama.cpp)", ErrNoLogits, i)
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(p)), c.nVocab), nil
}

// Embeddings returns a copy of the embedding of batch index i of the last decode
// (i = -1: the last output). The context needs Embeddings set.
func (c *Context) Embeddings(i int) ([]float32, error) {
	if err := c.enter(); err != nil {
		return nil, err
	}
	defer c.mu.Unlock()
	if !c.embeddings {
		return nil, errNoEmbeddings
	}
	if err := c.outputIndex(i); err != nil {
		return nil, err
	}
	p := C.llama_get_embeddings_ith(c.ptr, C.int32_t(i))
	if p == nil {
		return nil, fmt.Errorf("%w: llama.cpp returned no embedding for index %d", ErrNoLogits, i)
	}
	return append([]float32(nil), unsafe.Slice((*float32)(unsafe.Pointer(p)), c.nEmbdOut)...), nil
}

// SequenceEmbeddings returns a copy of the pooled embedding of a sequence after the
// last decode (with PoolingRank: its scores). The context needs Embeddings and a
// pooling type other than PoolingNone.
func (c *Context) SequenceEmbeddings(seq SeqID) ([]float32, error) {
	if err := c.enter(); err != nil {
		return nil, err
	}
	defer c.mu.Unlock()
	if !c.embeddings {
		return nil, errNoEmbeddings
	}
	if seq < 0 || int(seq) >= c.nSeqMax {
		return nil, invalidParam("sequence id %d out of range [0, %d)", seq, c.nSeqMax)
	}
	if c.pooling == PoolingNone {
		return nil, invalidParam("the context has pooling none: read per-token Embeddings")
	}
	p := C.llama_get_embeddings_seq(c.ptr, C.llama_seq_id(seq))
	if p == nil {
		return nil, fmt.Errorf("%w: no pooled embedding for sequence %d", ErrNoLogits, seq)
	}
	n := c.nEmbdOut
	if c.pooling == PoolingRank {
		n = int(C.llama_model_n_cls_out(c.model.ptr))
	}
	return append([]float32(nil), unsafe.Slice((*float32)(unsafe.Pointer(p)), n)...), nil
}

var errNoEmbeddings = errors.New("llama: the context was not created with Embeddings")
