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

// A goroutine that finds itself on the main thread hands fn to another thread and
// lets the main thread go without running fn there.
func TestRunFromMainThread(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("gettid: Linux")
	}
	first := make(chan int, 1)
	fnThread := make(chan int)
	release := make(chan struct{})
	go run(func() {
		fnThread <- syscall.Gettid()
		<-release
	}, func() bool {
		first <- syscall.Gettid()
		return true // as if this goroutine's thread were the main thread
	})
	held := <-first
	id := <-fnThread
	assert.NotEqual(t, held, id, "fn runs on another thread")
	close(release)
	assert.Eventually(t, func() bool { return !threadIDs(t)[id] }, 5e9, 1e6, "fn's thread ends with it")
	assert.True(t, threadIDs(t)[held] || held == syscall.Getpid(), "the first thread was let go, not ended")
}
