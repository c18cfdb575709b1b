package osthread

import (
	"os"
	"runtime"
	"strconv"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The main goroutine keeps the process's main thread, so that the tests can run code on
// it (through mainThread) and no other goroutine lands there.
func init() { runtime.LockOSThread() }

var mainThread = make(chan func())

func TestMain(m *testing.M) {
	done := make(chan int)
	go func() { done <- m.Run() }()
	for {
		select {
		case fn := <-mainThread:
			fn()
		case code := <-done:
			os.Exit(code)
		}
	}
}

// threadIDs lists the process's OS threads (Linux).
func threadIDs(t *testing.T) map[int]bool {
	entries, err := os.ReadDir("/proc/self/task")
	require.NoError(t, err)
	ids := map[int]bool{}
	for _, e := range entries {
		id, err := strconv.Atoi(e.Name())
		require.NoError(t, err)
		ids[id] = true
	}
	return ids
}

// fn runs on a thread that is not the main thread and ends with it.
func TestGo(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("thread ids from /proc and gettid: Linux")
	}
	for range 20 {
		tid := make(chan int)
		release := make(chan struct{})
		Go(func() {
			tid <- syscall.Gettid()
			<-release
		})
		id := <-tid
		assert.NotEqual(t, syscall.Getpid(), id, "not the main thread")
		assert.True(t, threadIDs(t)[id])
		close(release)
		assert.Eventually(t, func() bool { return !threadIDs(t)[id] }, 5e9, 1e6, "thread %d ends with fn", id)
	}
}

// A goroutine on the main thread hands fn to another thread and lets the main thread go
// on without running fn there.
func TestRunFromMainThread(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("gettid: Linux")
	}
	fnThread := make(chan int)
	release := make(chan struct{})
	onMain := make(chan bool)
	mainThread <- func() {
		onMain <- onMainThread()
		run(func() {
			fnThread <- syscall.Gettid()
			<-release
		}, onMainThread)
	}
	require.True(t, <-onMain, "the test's main thread serves run")
	id := <-fnThread
	assert.NotEqual(t, syscall.Getpid(), id, "fn runs on another thread")
	close(release)
	assert.Eventually(t, func() bool { return !threadIDs(t)[id] }, 5e9, 1e6, "fn's thread ends with it")
	ran := make(chan bool)
	mainThread <- func() { ran <- onMainThread() }
	assert.True(t, <-ran, "the main thread was let go and serves again")
}
