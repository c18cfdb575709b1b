package llama

/*
#include "shim.h"
*/
import "C"

import (
	"errors"
)

// The KV cache ("memory") operations. Position ranges are half-open [p0, p1); a
// negative p0 means from the start, a negative p1 means to the end.

var errNoMemory = errors.New("llama: the context has no KV memory")

// memory claims the context and returns its memory; the caller must c.mu.Unlock().
func (c *Context) memory() (C.llama_memory_t, error) {
	if err := c.enter(); err != nil {
		return nil, err
	}
	mem := C.llama_get_memory(c.ptr)
	if mem == nil {
		c.mu.Unlock()
		return nil, errNoMemory
	}
	return mem, nil
}

func (c *Context) checkSeq(seq SeqID) error {
	if seq < 0 || int(seq) >= c.nSeqMax {
		return invalidParam("sequence id %d out of range [0, %d)", seq, c.nSeqMax)
	}
	return nil
}

// MemoryClear empties the KV cache of all sequences; with data, the buffers are zeroed too.
func (c *Context) MemoryClear(data bool) error {
	mem, err := c.memory()
	if err != nil {
		return err
	}
	defer c.mu.Unlock()
	C.llama_memory_clear(mem, C.bool(data))
	c.outputs, c.nOutputs = c.outputs[:0], 0
	return nil
}

// MemorySeqRemove removes the tokens of sequence seq (-1: every sequence) in [p0, p1).
// It reports false when part of a sequence cannot be removed (recurrent models).
func (c *Context) MemorySeqRemove(seq SeqID, p0, p1 Pos) (bool, error) {
	if seq != -1 {
		if err := c.checkSeq(seq); err != nil {
			return false, err
		}
	}
	mem, err := c.memory()
	if err != nil {
		return false, err
	}
	defer c.mu.Unlock()
	return bool(C.llama_memory_seq_rm(mem, C.llama_seq_id(seq), C.llama_pos(p0), C.llama_pos(p1))), nil
}

// MemorySeqCopy makes the tokens of src in [p0, p1) part of dst too (sharing the cells).
func (c *Context) MemorySeqCopy(src, dst SeqID, p0, p1 Pos) error {
	if err := errors.Join(c.checkSeq(src), c.checkSeq(dst)); err != nil {
		return err
	}
	mem, err := c.memory()
	if err != nil {
		return err
	}
	defer c.mu.Unlock()
	C.llama_memory_seq_cp(mem, C.llama_seq_id(src), C.llama_seq_id(dst), C.llama_pos(p0), C.llama_pos(p1))
	return nil
}

// MemorySeqKeep removes every token that does not belong to seq.
func (c *Context) MemorySeqKeep(seq SeqID) error {
	if err := c.checkSeq(seq); err != nil {
		return err
	}
	mem, err := c.memory()
	if err != nil {
		return err
	}
	defer c.mu.Unlock()
	C.llama_memory_seq_keep(mem, C.llama_seq_id(seq))
	return nil
}

// MemorySeqAdd shifts the positions of seq's tokens in [p0, p1) by delta (context
// shifting). Not every model supports it: see MemoryCanShift.
func (c *Context) MemorySeqAdd(seq SeqID, p0, p1, delta Pos) error {
	return c.shift(seq, p0, p1, func(mem C.llama_memory_t) {
		C.llama_memory_seq_add(mem, C.llama_seq_id(seq), C.llama_pos(p0), C.llama_pos(p1), C.llama_pos(delta))
	})
}

// MemorySeqDiv divides the positions of seq's tokens in [p0, p1) by d (self-extend).
func (c *Context) MemorySeqDiv(seq SeqID, p0, p1 Pos, d int) error {
	if d < 1 || d > 1<<30 {
		return invalidParam("divisor %d must be >= 1", d)
	}
	return c.shift(seq, p0, p1, func(mem C.llama_memory_t) {
		C.llama_memory_seq_div(mem, C.llama_seq_id(seq), C.llama_pos(p0), C.llama_pos(p1), C.int(d))
	})
}

func (c *Context) shift(seq SeqID, p0, p1 Pos, op func(C.llama_memory_t)) error {
	if err := c.checkSeq(seq); err != nil {
		return err
	}
	mem, err := c.memory()
	if err != nil {
		return err
	}
	defer c.mu.Unlock()
	if !C.llama_memory_can_shift(mem) {
		return invalidParam("this model's memory does not support position shifts")
	}
	op(mem)
	return nil
}

// MemoryCanShift reports whether MemorySeqAdd and MemorySeqDiv are supported.
func (c *Context) MemoryCanShift() (bool, error) {
	mem, err := c.memory()
	if err != nil {
		return false, err
	}
	defer c.mu.Unlock()
	return bool(C.llama_memory_can_shift(mem)), nil
}

// MemorySeqPosRange returns the smallest and largest positions cached for seq,
// or -1, -1 when the sequence is empty.
func (c *Context) MemorySeqPosRange(seq SeqID) (lo, hi Pos, err error) {
	if err := c.checkSeq(seq); err != nil {
		return -1, -1, err
	}
	mem, err := c.memory()
	if err != nil {
		return -1, -1, err
	}
	defer c.mu.Unlock()
	return Pos(C.llama_memory_seq_pos_min(mem, C.llama_seq_id(seq))), Pos(C.llama_memory_seq_pos_max(mem, C.llama_seq_id(seq))), nil
}
