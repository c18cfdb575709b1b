package llama

/*
#include "shim.h"
*/
import "C"

import (
	"sync"

	"github.com/llamago/llamago/internal/osthread"
)

// computeThread is the one OS thread on which a context computes on the CPU. The CPU
// backend's OpenMP workers belong to the OS thread that calls llama.cpp, and a goroutine
// runs on whichever thread the Go scheduler gives it: every thread that ever decoded kept
// a team of its own, and once the teams together outnumbered the cores, OpenMP's
// barriers stopped spinning and slept, which cost generation up to a third of its speed
// on 2 cores (docs/performance.md). Decodes of a context that computes layers on the
// CPU therefore run here, each handed over and back (microseconds beside milliseconds
// of compute); the thread, and its team with it, ends at Close (internal/osthread). A
// context whose layers all run on GPUs calls directly: the hand-over would cost more
// than the little the CPU does for it.
type computeThread struct {
	jobs    chan *computeJob
	done    chan struct{} // one per job
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

func startComputeThread() *computeThread {
	t := &computeThread{jobs: make(chan *computeJob), done: make(chan struct{}), exited: make(chan struct{})}
	osthread.Go(t.loop)
	return t
}

func (t *computeThread) loop() {
	defer close(t.exited)
	for j := range t.jobs {
		switch {
		case j.fn != nil:
			j.fn()
		case j.encode:
			j.rc = C.llama_encode(j.ctx, j.batch)
		default:
			j.rc = C.llama_decode(j.ctx, j.batch)
		}
		t.done <- struct{}{}
	}
}

// run does j on the thread and returns when it is done.
func (t *computeThread) run(j *computeJob) {
	t.jobs <- j
	<-t.done
}

// stop ends the thread once its job is done. A nil thread, or one stopped before, is a no-op.
func (t *computeThread) stop() {
	if t != nil {
		t.stopped.Do(func() {
			close(t.jobs)
			<-t.exited
		})
	}
}
