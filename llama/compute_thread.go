package llama

/*
#include "shim.h"
*/
import "C"

import (
	"fmt"
	"os"
	"runtime/cgo"
	"sync"
)

// computeThread is the one OS thread on which a context computes on the CPU. The CPU
// backend's OpenMP workers belong to the OS thread that calls llama.cpp, and a goroutine
// runs on whichever thread the Go scheduler gives it: every thread that ever decoded kept
// a team of its own, and once the teams together outnumbered the cores, OpenMP's
// barriers stopped spinning and slept, which cost generation up to a third of its speed
// on 2 cores (docs/performance.md). Decodes of a context that computes layers on the
// CPU therefore run here, each handed over and back (microseconds beside milliseconds
// of compute); the thread, and its team with it, ends at Close. A context whose layers
// all run on GPUs calls directly: the hand-over would cost more than the little the CPU
// does for it.
//
// The thread is C's, outside the Go runtime, and the caller waits for it in Go's poller
// (a byte on a pipe) rather than in a cgo call: while a goroutine sits in a cgo call,
// Go's monitor thread polls its processor, from every 20 µs up to every 10 ms, and after
// 10 ms takes the processor back, which restarts the polling at 20 µs: some 55
// wake-ups per token on 2 cores, each preempting one of the OpenMP workers that the
// others wait for (2-5% of CPU generation, docs/performance.md). With the caller parked
// in the poller every processor is idle and the monitor sleeps.
type computeThread struct {
	ptr     *C.lgo_compute_thread
	done    *os.File // a byte per finished job
	signal  *os.File // the thread's end of the pipe
	buf     [1]byte
	exited  chan struct{}
	stopped sync.Once
}

// computeJob is a context's request to its thread: a batch to decode or encode, or fn.
// Each context reuses its one job, so a decode allocates nothing.
type computeJob struct {
	ctx    *C.struct_llama_context
	batch  C.struct_llama_batch
	encode bool
	rc     C.int32_t
	fn     func()
}

func startComputeThread() (*computeThread, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("llama: starting the compute thread: %w", err)
	}
	ptr := C.lgo_compute_start(C.int(w.Fd()))
	if ptr == nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("llama: starting the compute thread failed")
	}
	return &computeThread{ptr: ptr, done: r, signal: w, exited: make(chan struct{})}, nil
}

// run does j on the thread and returns when it is done.
func (t *computeThread) run(j *computeJob) {
	switch {
	case j.fn != nil:
		h := cgo.NewHandle(j.fn)
		defer h.Delete()
		C.lgo_compute_submit(t.ptr, C.LGO_COMPUTE_FN, nil, C.struct_llama_batch{}, C.uintptr_t(h))
	case j.encode:
		C.lgo_compute_submit(t.ptr, C.LGO_COMPUTE_ENCODE, j.ctx, j.batch, 0)
	default:
		C.lgo_compute_submit(t.ptr, C.LGO_COMPUTE_DECODE, j.ctx, j.batch, 0)
	}
	for {
		n, err := t.done.Read(t.buf[:])
		if n == 1 {
			break
		}
		if err != nil {
			// Our own pipe, open until stop: nothing to recover from.
			panic(fmt.Sprintf("llama: waiting for the compute thread: %v", err))
		}
	}
	j.rc = C.lgo_compute_rc(t.ptr)
}

//export goComputeRun
func goComputeRun(h C.uintptr_t) { cgo.Handle(h).Value().(func())() }

// stop ends the thread once its job is done. A nil thread, or one stopped before, is a no-op.
func (t *computeThread) stop() {
	if t != nil {
		t.stopped.Do(func() {
			C.lgo_compute_stop(t.ptr)
			t.done.Close()
			t.signal.Close()
			close(t.exited)
		})
	}
}
