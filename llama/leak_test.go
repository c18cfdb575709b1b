package llama

import (
	"bufio"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// procStatus reads VmRSS and RssAnon (bytes) from /proc/self/status.
func procStatus(t *testing.T) (rss, anon int64) {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Skip("no /proc/self/status:", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || (key != "VmRSS" && key != "RssAnon") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(val), " kB"), 10, 64)
		require.NoError(t, err, "%s: %q", key, val)
		if key == "VmRSS" {
			rss = kb << 10
		} else {
			anon = kb << 10
		}
	}
	require.NoError(t, sc.Err())
	return rss, anon
}

// TestLeakLoadGenerateClose runs 200 cycles of load, context, sampler, batch, generation
// and Close of a micro model (4 MiB of F32 weights; read into memory on odd cycles,
// memory-mapped on even ones) and checks that the process's resident and anonymous
// memory stay flat after a warm-up and that no goroutine outlives its cycle. A leak of
// the weights, the KV cache or the compute buffers per cycle would exceed the bound
// many times over.
func TestLeakLoadGenerateClose(t *testing.T) {
	const warmup = 20
	cycles := 200
	if n, err := strconv.Atoi(os.Getenv("LLAMAGO_LEAK_CYCLES")); err == nil && n > warmup {
		cycles = n // longer runs when hunting a leak
	}
	path := microModelFile(t, 256, 1024, nil)
	st, err := os.Stat(path)
	require.NoError(t, err)
	baseGoroutines := runtime.NumGoroutine()

	var rss0, anon0 int64
	for i := range cycles {
		leakCycle(t, path, i)
		if t.Failed() {
			return
		}
		if i+1 == warmup {
			runtime.GC()
			rss0, anon0 = procStatus(t)
		}
	}
	runtime.GC()
	rss1, anon1 := procStatus(t)
	const mib = 1 << 20
	t.Logf("model %.1f MiB; after cycle %d: VmRSS %.1f MiB, RssAnon %.1f MiB; after cycle %d: VmRSS %.1f MiB (%+.1f), RssAnon %.1f MiB (%+.1f)",
		float64(st.Size())/mib, warmup, float64(rss0)/mib, float64(anon0)/mib, cycles,
		float64(rss1)/mib, float64(rss1-rss0)/mib, float64(anon1)/mib, float64(anon1-anon0)/mib)
	// Leaking the model in a tenth of the cycles would add 18 times its size.
	bound := 32*mib + 2*st.Size()
	assert.Less(t, rss1-rss0, bound, "VmRSS grew")
	assert.Less(t, anon1-anon0, bound, "RssAnon grew")

	// Goroutines (context.AfterFunc watchers, cleanups) return to the baseline.
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > baseGoroutines && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("goroutines: %d before, %d after", baseGoroutines, runtime.NumGoroutine())
	assert.LessOrEqual(t, runtime.NumGoroutine(), baseGoroutines, "goroutines left behind")
}

// leakCycle is one load/generate/close cycle; even cycles sample with a grammar.
func leakCycle(t *testing.T, path string, i int) {
	m, err := LoadModel(t.Context(), path, &ModelParams{GPULayers: 0, NoMmap: i%2 == 1})
	require.NoError(t, err)
	defer func() { require.NoError(t, m.Close()) }()
	c, err := m.NewContext(&ContextParams{NCtx: 256, NBatch: 64, Threads: 1})
	require.NoError(t, err)
	defer func() { require.NoError(t, c.Close()) }()
	stages := []Stage{TopK(20), Temp(0.8), Seed(uint32(i))}
	if i%2 == 0 {
		stages = append(stages, Grammar(`root ::= [a-z ]+ "."`))
	}
	s, err := NewSampler(m, stages...)
	require.NoError(t, err)
	defer func() { require.NoError(t, s.Close()) }()
	b, err := NewBatch(8, 1)
	require.NoError(t, err)
	defer func() { require.NoError(t, b.Close()) }()
	for j := range 4 {
		require.NoError(t, b.Add(Token(300+j), Pos(j), j == 3, 0))
	}
	require.NoError(t, c.Decode(t.Context(), b))
	_, err = c.Logits(3)
	require.NoError(t, err)
	n := 0
	for _, err := range c.GenerateText(t.Context(), " hello world", s, &GenerateParams{MaxTokens: 8, Seq: 0}) {
		require.NoError(t, err)
		n++
	}
	require.Positive(t, n)
}

// osThreads counts the process's threads (/proc/self/task).
func osThreads(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Skip("no /proc/self/task:", err)
	}
	return len(entries)
}

// A context computing on the CPU decodes on an OS thread of its own (computeThread),
// where its OpenMP workers live: Close ends that thread and its workers, so 50 contexts
// of 4 threads each leave no thread behind.
func TestContextThreadsStopAtClose(t *testing.T) {
	m := loadTiny(t)
	c, err := m.NewContext(&ContextParams{NCtx: 256, Threads: 4})
	require.NoError(t, err)
	greedy(t, c, []Token{1, 2, 3}, 2)
	require.NoError(t, c.Close()) // the Go runtime's own threads are started by now
	before := osThreads(t)
	for range 50 {
		c, err := m.NewContext(&ContextParams{NCtx: 256, Threads: 4})
		require.NoError(t, err)
		greedy(t, c, []Token{1, 2, 3}, 2)
		require.NoError(t, c.Close())
	}
	// The Go runtime may start a few threads of its own meanwhile; 50 leaked threads
	// with their teams would leave 200.
	assert.InDelta(t, before, osThreads(t), 8, "threads before and after")
}

// BindThread ends the context's own thread (and with it its OpenMP workers; the count
// of OS threads is TestContextThreadsStopAtClose's): the caller's thread computes from
// then on, with the same results; a closed context refuses it.
func TestBindThread(t *testing.T) {
	m := loadTiny(t)
	c, err := m.NewContext(&ContextParams{NCtx: 256, Threads: 2})
	require.NoError(t, err)
	want := greedy(t, c, []Token{1, 2, 3}, 4)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	own := c.thread
	require.NotNil(t, own, "a CPU context has a thread of its own")
	require.NoError(t, c.BindThread())
	assert.Nil(t, c.thread)
	select {
	case <-own.exited: // its goroutine returned while locked: the OS thread ended with it
	default:
		t.Fatal("the context's own thread still runs after BindThread")
	}
	require.NoError(t, c.BindThread(), "again: nothing to end")
	assert.Equal(t, want, greedy(t, c, []Token{1, 2, 3}, 4))
	require.NoError(t, c.Close())
	assert.ErrorIs(t, c.BindThread(), ErrClosed)
}
