package llama

/*
#include "shim.h"
*/
import "C"

import (
	"fmt"
	"runtime"
	"unsafe"
)

// Pos is a token position within a sequence.
type Pos int32

// SeqID identifies a sequence in a Context (0 to NSeqMax-1).
type SeqID int32

// Batch is a set of tokens to decode together: each token has a position, belongs to
// one or more sequences, and may request its logits (output). Its arrays live in C
// memory, so filling a batch needs no cgo calls. A Batch serves one goroutine at a time.
type Batch struct {
	c        C.struct_llama_batch
	capacity int
	nSeqMax  int
	// Go views of the C arrays.
	tokens []Token
	pos    []Pos
	nSeq   []int32
	seqIDs []*C.llama_seq_id
	output []int8
	// cleanup frees the C arrays if the batch is dropped without Close.
	cleanup runtime.Cleanup
}

// NewBatch allocates a batch of up to capacity tokens, each in up to nSeqMax sequences.
func NewBatch(capacity, nSeqMax int) (*Batch, error) {
	if capacity < 1 || capacity > 1<<24 {
		return nil, invalidParam("batch capacity %d out of range [1, %d]", capacity, 1<<24)
	}
	if nSeqMax < 1 || nSeqMax > maxParallelSequences() {
		return nil, invalidParam("batch nSeqMax %d out of range [1, %d]", nSeqMax, maxParallelSequences())
	}
	initBackend()
	b := &Batch{capacity: capacity, nSeqMax: nSeqMax}
	b.c = C.llama_batch_init(C.int32_t(capacity), 0, C.int32_t(nSeqMax))
	b.tokens = unsafe.Slice((*Token)(unsafe.Pointer(b.c.token)), capacity)
	b.pos = unsafe.Slice((*Pos)(unsafe.Pointer(b.c.pos)), capacity)
	b.nSeq = unsafe.Slice((*int32)(unsafe.Pointer(b.c.n_seq_id)), capacity)
	b.seqIDs = unsafe.Slice(b.c.seq_id, capacity)
	b.output = unsafe.Slice((*int8)(unsafe.Pointer(b.c.logits)), capacity)
	b.cleanup = runtime.AddCleanup(b, func(c C.struct_llama_batch) { C.llama_batch_free(c) }, b.c)
	return b, nil
}

var maxParallelSequences = func() int {
	initBackend()
	return int(C.llama_max_parallel_sequences())
}

// Add appends a token at position pos in the given sequences (at least one); output
// requests its logits (or embeddings) from the next decode.
func (b *Batch) Add(t Token, pos Pos, output bool, seqs ...SeqID) error {
	if b.tokens == nil {
		return ErrClosed
	}
	i := int(b.c.n_tokens)
	if i >= b.capacity {
		return fmt.Errorf("%w: batch is full (%d tokens)", ErrInvalidBatch, b.capacity)
	}
	if len(seqs) < 1 || len(seqs) > b.nSeqMax {
		return fmt.Errorf("%w: a token needs 1 to %d sequence ids, got %d", ErrInvalidBatch, b.nSeqMax, len(seqs))
	}
	if pos < 0 {
		return fmt.Errorf("%w: negative position %d", ErrInvalidBatch, pos)
	}
	b.tokens[i] = t
	b.pos[i] = pos
	b.nSeq[i] = int32(len(seqs))
	row := unsafe.Slice((*SeqID)(unsafe.Pointer(b.seqIDs[i])), b.nSeqMax)
	copy(row, seqs)
	b.output[i] = 0
	if output {
		b.output[i] = 1
	}
	b.c.n_tokens++
	return nil
}

// SetOutput turns the output request of token i on or off.
func (b *Batch) SetOutput(i int, output bool) error {
	if b.tokens == nil {
		return ErrClosed
	}
	if i < 0 || i >= b.Len() {
		return fmt.Errorf("%w: index %d out of range [0, %d)", ErrInvalidBatch, i, b.Len())
	}
	b.output[i] = 0
	if output {
		b.output[i] = 1
	}
	return nil
}

// Len is the number of tokens in the batch.
func (b *Batch) Len() int { return int(b.c.n_tokens) }

// Cap is the most tokens the batch holds.
func (b *Batch) Cap() int { return b.capacity }

// Clear empties the batch for reuse.
func (b *Batch) Clear() { b.c.n_tokens = 0 }

// Close frees the batch. Calling it again is a no-op.
func (b *Batch) Close() error {
	if b.tokens == nil {
		return nil
	}
	b.cleanup.Stop()
	C.llama_batch_free(b.c)
	b.c = C.struct_llama_batch{}
	b.tokens, b.pos, b.nSeq, b.seqIDs, b.output = nil, nil, nil, nil, nil
	return nil
}

// validate checks everything llama.cpp would reject or abort on, for a context with
// nVocab tokens, effective batch size nBatch and nSeqMax sequences.
func (b *Batch) validate(nVocab, nBatch, nSeqMax int) error {
	if b.tokens == nil {
		return ErrClosed
	}
	n := b.Len()
	switch {
	case n == 0:
		return fmt.Errorf("%w: empty batch", ErrInvalidBatch)
	case n > nBatch:
		return fmt.Errorf("%w: %d tokens exceed the context's n_batch of %d (split the batch or raise NBatch)", ErrInvalidBatch, n, nBatch)
	}
	for i := range n {
		if t := b.tokens[i]; t < 0 || int(t) >= nVocab {
			return fmt.Errorf("%w: token %d at batch index %d (vocabulary has %d tokens)", ErrInvalidToken, t, i, nVocab)
		}
		ns := int(b.nSeq[i])
		if ns < 1 || ns > b.nSeqMax {
			return fmt.Errorf("%w: token %d has %d sequence ids", ErrInvalidBatch, i, ns)
		}
		for _, s := range unsafe.Slice((*SeqID)(unsafe.Pointer(b.seqIDs[i])), ns) {
			if s < 0 || int(s) >= nSeqMax {
				return fmt.Errorf("%w: sequence id %d at batch index %d out of range [0, %d)", ErrInvalidBatch, s, i, nSeqMax)
			}
		}
	}
	return nil
}
