package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/llamago/llamago/llama"
)

// ErrSlotBusy is returned when saving, restoring or erasing a slot that serves a request.
var ErrSlotBusy = errors.New("engine: slot is serving a request")

// SaveSlot writes the KV cache that slot id keeps between requests, and the tokens it
// holds, to path in llama.cpp's sequence state format (llama-server's slot files). It
// returns how many tokens were saved. The slot must be idle.
func (e *Engine) SaveSlot(ctx context.Context, id int, path string) (tokens int, err error) {
	err = e.onSlot(ctx, id, func(s *slot) error {
		if slices.Contains(s.cached, mediaToken) {
			return fmt.Errorf("%w: slot %d holds media, which a slot file cannot", llama.ErrInvalidParams, id)
		}
		tokens = len(s.cached)
		return e.ctx.SaveSeqStateFile(path, s.seq, s.cached)
	})
	return tokens, err
}

// RestoreSlot replaces the cache of idle slot id with a file written by SaveSlot (or by
// llama-server): a request whose prompt starts with the file's tokens then decodes only
// the rest. It returns how many tokens were restored. A file that cannot be restored
// (llama.ErrInvalidState) leaves the slot empty.
func (e *Engine) RestoreSlot(ctx context.Context, id int, path string) (tokens int, err error) {
	err = e.onSlot(ctx, id, func(s *slot) error {
		e.forget(s)
		got, err := e.ctx.LoadSeqStateFile(path, s.seq)
		if err != nil {
			return err
		}
		s.cached = append(s.cached[:0], got...)
		s.used = e.clock
		tokens = len(got)
		return nil
	})
	return tokens, err
}

// EraseSlot empties the cache of idle slot id and returns how many tokens it held.
func (e *Engine) EraseSlot(ctx context.Context, id int) (tokens int, err error) {
	err = e.onSlot(ctx, id, func(s *slot) error {
		tokens = len(s.cached)
		e.forget(s)
		return nil
	})
	return tokens, err
}

// control is work for the loop goroutine, which owns the context, done between steps.
type control struct {
	fn    func()
	done  chan struct{}
	taken atomic.Bool // by the loop, to run it, or by a caller that gave up waiting
}

// onSlot runs fn on slot id in the loop goroutine, between steps, if the slot is idle.
func (e *Engine) onSlot(ctx context.Context, id int, fn func(*slot) error) error {
	if id < 0 || id >= len(e.slots) {
		return fmt.Errorf("%w: engine: slot %d out of range [0, %d)", llama.ErrInvalidParams, id, len(e.slots))
	}
	return e.do(ctx, func() error {
		s := e.slots[id]
		if s.job != nil {
			return fmt.Errorf("%w: slot %d", ErrSlotBusy, id)
		}
		return fn(s)
	})
}

// do runs fn in the loop goroutine, which owns the context, between steps.
func (e *Engine) do(ctx context.Context, fn func() error) error {
	var err error
	c := &control{done: make(chan struct{}), fn: func() { err = fn() }}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return ErrClosed
	}
	e.controls = append(e.controls, c)
	e.mu.Unlock()
	e.signal()
	select {
	case <-c.done:
		return err
	case <-e.done:
		return ErrClosed
	case <-ctx.Done():
		if c.taken.CompareAndSwap(false, true) {
			return context.Cause(ctx) // the loop will skip it
		}
		<-c.done // running: let it finish
		return err
	}
}

// runControls does the controls queued since the last step.
func (e *Engine) runControls() {
	e.mu.Lock()
	cs := e.controls
	e.controls = nil
	e.mu.Unlock()
	for _, c := range cs {
		if c.taken.CompareAndSwap(false, true) {
			c.fn()
		}
		close(c.done)
	}
}

// SlotStatus describes one slot, as SlotStatuses reports it.
type SlotStatus struct {
	ID     int
	Active bool // serving a request
	// CachedTokens is how many tokens the engine counts in the slot's KV cache;
	// KVTokens is how many positions llama.cpp holds for the slot's sequence. They are
	// equal between requests.
	CachedTokens int
	KVTokens     int
}

// SlotStatuses reports every slot, read in the loop goroutine between steps.
func (e *Engine) SlotStatuses(ctx context.Context) ([]SlotStatus, error) {
	out := make([]SlotStatus, len(e.slots))
	err := e.do(ctx, func() error {
		for i, s := range e.slots {
			lo, hi, err := e.ctx.MemorySeqPosRange(s.seq)
			if err != nil {
				return err
			}
			out[i] = SlotStatus{ID: i, Active: s.job != nil, CachedTokens: len(s.cached)}
			if hi >= 0 {
				out[i].KVTokens = int(hi-lo) + 1
			}
		}
		return nil
	})
	return out, err
}
