// Package osthread runs goroutines on OS threads of their own that end with them.
//
// llama.cpp's CPU backend computes with an OpenMP team per calling OS thread (GNU
// libgomp), and the team lives as long as that thread. A thread that Go reuses, or the
// process's main thread, which never ends (Go parks it when its locked goroutine
// exits), would keep its team's idle workers; libgomp counts them against the cores,
// and once all teams together outnumber the cores it makes every barrier sleep instead
// of spinning, which costs CPU generation up to a third of its speed on 2 cores.
package osthread

import "runtime"

// Go runs fn on a new goroutine locked to an OS thread of its own, never the process's
// main thread; the thread ends when fn returns.
func Go(fn func()) {
	go run(fn, onMainThread)
}

func run(fn func(), onMain func() bool) {
	runtime.LockOSThread() // never unlocked: Go ends the thread with the goroutine
	if !onMain() {
		fn()
		return
	}
	// This goroutine holds the main thread until another one has a thread of its own:
	// a locked thread runs no other goroutine, so that one cannot be given it.
	locked := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		close(locked)
		fn()
	}()
	<-locked
	runtime.UnlockOSThread()
}
