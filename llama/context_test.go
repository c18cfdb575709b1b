package llama

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/llamago/llamago/llama/gguf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// logitTolerance is how far logits of the same tokens may differ between batch layouts:
// CPU kernels agree to 1e-4; GPU builds offload some operations even for CPU layers
// (and a unified or split KV cache takes other kernels there).
func logitTolerance() float64 {
	if SupportsGPUOffload() {
		return 2e-3
	}
	return 1e-4
}

func argmax(v []float32) Token {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return Token(best)
}

// greedy decodes prompt, then n tokens picking the most likely each time.
func greedy(t *testing.T, c *Context, prompt []Token, n int) []Token {
	t.Helper()
	require.NoError(t, c.MemoryClear(true))
	require.NoError(t, c.DecodeTokens(t.Context(), prompt, 0, 0))
	var out []Token
	for i := range n {
		logits, err := c.LogitsView(-1)
		require.NoError(t, err)
		tok := argmax(logits)
		out = append(out, tok)
		require.NoError(t, c.DecodeTokens(t.Context(), []Token{tok}, Pos(len(prompt)+i), 0))
	}
	return out
}

func TestGreedyDeterministic(t *testing.T) {
	m := loadTiny(t)
	prompt, err := m.Tokenize("Once upon a time, in a land far away,", AddSpecial)
	require.NoError(t, err)

	c, err := m.NewContext(&ContextParams{NCtx: 256})
	require.NoError(t, err)
	defer c.Close()
	first := greedy(t, c, prompt, 24)
	again := greedy(t, c, prompt, 24)
	assert.Equal(t, first, again, "same context, cleared memory")

	c2, err := m.NewContext(&ContextParams{NCtx: 256, Threads: 1})
	require.NoError(t, err)
	defer c2.Close()
	assert.Equal(t, first, greedy(t, c2, prompt, 24), "a second context with another thread count")
	t.Logf("greedy tokens: %v", first)
}

func TestBatchSplitParity(t *testing.T) {
	// F32 weights: with F16 the one-token path rounds activations differently.
	m, err := LoadModel(t.Context(), synthModel(t, "llama-tiny", gguf.TypeF32), &ModelParams{GPULayers: 0})
	require.NoError(t, err)
	defer m.Close()
	prompt, err := m.Tokenize("The capital of France is Paris. The capital of Germany is Berlin. The capital of Italy is", AddSpecial)
	require.NoError(t, err)
	require.Greater(t, len(prompt), 16)

	logitsWith := func(nBatch int) []float32 {
		c, err := m.NewContext(&ContextParams{NCtx: 256, NBatch: nBatch, NUBatch: nBatch})
		require.NoError(t, err)
		defer c.Close()
		require.Equal(t, nBatch, c.NBatch())
		require.NoError(t, c.DecodeTokens(t.Context(), prompt, 0, 0))
		l, err := c.Logits(-1)
		require.NoError(t, err)
		return l
	}
	whole := logitsWith(256)
	for _, nb := range []int{1, 5, 16} {
		chunked := logitsWith(nb)
		require.Len(t, chunked, len(whole))
		assert.InDeltaSlice(t, whole, chunked, 1e-4, "n_batch %d", nb)
	}
}

func TestBatchMultiSequence(t *testing.T) {
	m := loadTiny(t)
	// A unified KV cache: sequences share cells (MemorySeqCopy) and MemorySeqKeep sees them all.
	c, err := m.NewContext(&ContextParams{NCtx: 256, NSeqMax: 2, KVUnified: true})
	require.NoError(t, err)
	defer c.Close()
	a, err := m.Tokenize("Hello there", AddSpecial)
	require.NoError(t, err)
	b, err := m.Tokenize("A different prompt entirely", AddSpecial)
	require.NoError(t, err)

	batch, err := NewBatch(64, 2)
	require.NoError(t, err)
	defer batch.Close()
	for i, tok := range a {
		require.NoError(t, batch.Add(tok, Pos(i), i == len(a)-1, 0))
	}
	for i, tok := range b {
		require.NoError(t, batch.Add(tok, Pos(i), i == len(b)-1, 1))
	}
	require.NoError(t, c.Decode(t.Context(), batch))
	la, err := c.Logits(len(a) - 1)
	require.NoError(t, err)
	lb, err := c.Logits(-1)
	require.NoError(t, err)
	_, err = c.Logits(0)
	assert.ErrorIs(t, err, ErrNoLogits, "index without output")
	_, err = c.Logits(-3)
	assert.ErrorIs(t, err, ErrNoLogits)

	// Each sequence alone gives the same logits as together.
	for seq, toks := range [][]Token{a, b} {
		solo, err := m.NewContext(&ContextParams{NCtx: 256})
		require.NoError(t, err)
		require.NoError(t, solo.DecodeTokens(t.Context(), toks, 0, 0))
		l, err := solo.Logits(-1)
		require.NoError(t, err)
		assert.InDeltaSlice(t, []([]float32){la, lb}[seq], l, logitTolerance(), "sequence %d", seq)
		solo.Close()
	}

	// KV memory operations.
	lo, hi, err := c.MemorySeqPosRange(1)
	require.NoError(t, err)
	assert.Equal(t, Pos(0), lo)
	assert.Equal(t, Pos(len(b)-1), hi)
	require.NoError(t, c.MemorySeqCopy(0, 1, -1, -1))
	ok, err := c.MemorySeqRemove(1, 2, -1)
	require.NoError(t, err)
	assert.True(t, ok)
	_, hi, err = c.MemorySeqPosRange(1)
	require.NoError(t, err)
	assert.Equal(t, Pos(1), hi)
	require.NoError(t, c.MemorySeqKeep(0))
	lo, hi, err = c.MemorySeqPosRange(1)
	require.NoError(t, err)
	assert.Equal(t, Pos(-1), lo)
	assert.Equal(t, Pos(-1), hi)
	canShift, err := c.MemoryCanShift()
	require.NoError(t, err)
	assert.True(t, canShift)
	require.NoError(t, c.MemorySeqAdd(0, 0, -1, 10))
	lo, _, err = c.MemorySeqPosRange(0)
	require.NoError(t, err)
	assert.Equal(t, Pos(10), lo)
	require.NoError(t, c.MemorySeqDiv(0, 0, -1, 2))
	lo, _, err = c.MemorySeqPosRange(0)
	require.NoError(t, err)
	assert.Equal(t, Pos(5), lo)

	for _, bad := range []SeqID{-1, 2, 100} {
		_, _, err := c.MemorySeqPosRange(bad)
		assert.ErrorIs(t, err, ErrInvalidParams)
		assert.ErrorIs(t, c.MemorySeqKeep(bad), ErrInvalidParams)
		assert.ErrorIs(t, c.MemorySeqCopy(0, bad, -1, -1), ErrInvalidParams)
		assert.ErrorIs(t, c.MemorySeqAdd(bad, 0, -1, 1), ErrInvalidParams)
	}
	assert.ErrorIs(t, c.MemorySeqDiv(0, 0, -1, 0), ErrInvalidParams)
	_, err = c.MemorySeqRemove(-1, -1, -1)
	require.NoError(t, err, "-1 removes from every sequence")
}

func TestDecodeBadInput(t *testing.T) {
	m := loadTiny(t)
	c, err := m.NewContext(&ContextParams{NCtx: 64, NBatch: 16})
	require.NoError(t, err)
	defer c.Close()
	n := m.Vocab().NTokens

	b, err := NewBatch(32, 2)
	require.NoError(t, err)
	defer b.Close()

	assert.ErrorIs(t, c.Decode(t.Context(), b), ErrInvalidBatch, "empty batch")
	for _, bad := range []Token{-1, Token(n), Token(n + 100)} {
		b.Clear()
		require.NoError(t, b.Add(1, 0, true, 0))
		require.NoError(t, b.Add(bad, 1, true, 0))
		assert.ErrorIs(t, c.Decode(t.Context(), b), ErrInvalidToken, "token %d", bad)
	}
	b.Clear()
	for i := range 17 {
		require.NoError(t, b.Add(1, Pos(i), false, 0))
	}
	assert.ErrorIs(t, c.Decode(t.Context(), b), ErrInvalidBatch, "17 tokens > n_batch 16")
	b.Clear()
	require.NoError(t, b.Add(1, 0, true, 1))
	assert.ErrorIs(t, c.Decode(t.Context(), b), ErrInvalidBatch, "sequence 1 of a 1-sequence context")
	assert.ErrorIs(t, b.Add(1, -1, true, 0), ErrInvalidBatch, "negative position")
	assert.ErrorIs(t, b.Add(1, 0, true), ErrInvalidBatch, "no sequence")
	assert.ErrorIs(t, b.Add(1, 0, true, 0, 1, 0), ErrInvalidBatch, "more sequences than the batch holds")
	assert.ErrorIs(t, b.SetOutput(5, true), ErrInvalidBatch)
	assert.ErrorIs(t, c.DecodeTokens(t.Context(), nil, 0, 0), ErrInvalidBatch)
	assert.ErrorIs(t, c.DecodeTokens(t.Context(), []Token{1}, 0, 3), ErrInvalidBatch)
	_, err = c.Logits(0)
	assert.ErrorIs(t, err, ErrNoLogits, "no decode yet")

	// Prompts longer than the context fill it.
	long := longPrompt(c.NCtx() + 10)
	err = c.DecodeTokens(t.Context(), long, 0, 0)
	assert.ErrorIs(t, err, ErrContextFull)

	// Bad context parameters.
	for name, p := range map[string]*ContextParams{
		"nctx":    {NCtx: -1},
		"threads": {Threads: 100000},
		"seqs":    {NSeqMax: 100000},
		"cache":   {TypeK: 99},
		"flash":   {FlashAttention: 7},
		"pooling": {Pooling: 42},
	} {
		_, err := m.NewContext(p)
		assert.ErrorIs(t, err, ErrInvalidParams, name)
	}
	_, err = NewBatch(0, 1)
	assert.ErrorIs(t, err, ErrInvalidParams)
	_, err = NewBatch(1, 0)
	assert.ErrorIs(t, err, ErrInvalidParams)

	// Still alive: a valid decode works.
	require.NoError(t, c.MemoryClear(false))
	require.NoError(t, c.DecodeTokens(t.Context(), long[:10], 0, 0))
	_, err = c.Logits(-1)
	require.NoError(t, err)
}

func TestCloseSemantics(t *testing.T) {
	m := loadTiny(t)
	c, err := m.NewContext(&ContextParams{NCtx: 64})
	require.NoError(t, err)
	toks, err := m.Tokenize("hello", AddSpecial)
	require.NoError(t, err)

	// Closing the model keeps open contexts working.
	require.NoError(t, m.Close())
	require.NoError(t, c.DecodeTokens(t.Context(), toks, 0, 0))
	_, err = m.NewContext(nil)
	assert.ErrorIs(t, err, ErrClosed)

	require.NoError(t, c.Close())
	require.NoError(t, c.Close(), "Close twice")
	assert.ErrorIs(t, c.DecodeTokens(t.Context(), toks, 0, 0), ErrClosed)
	_, err = c.Logits(-1)
	assert.ErrorIs(t, err, ErrClosed)
	assert.ErrorIs(t, c.MemoryClear(true), ErrClosed)
	_, err = c.Perf()
	assert.ErrorIs(t, err, ErrClosed)

	b, err := NewBatch(4, 1)
	require.NoError(t, err)
	require.NoError(t, b.Close())
	require.NoError(t, b.Close())
	assert.ErrorIs(t, b.Add(1, 0, true, 0), ErrClosed)
}

func longPrompt(n int) []Token {
	toks := make([]Token, n)
	for i := range toks {
		toks[i] = Token(1000 + i%5000)
	}
	return toks
}

func TestDecodeCancel(t *testing.T) {
	m := loadTiny(t)
	c, err := m.NewContext(&ContextParams{NCtx: 4096, NBatch: 4096})
	require.NoError(t, err)
	defer c.Close()
	prompt := longPrompt(4096) // takes about a second on two cores

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err = c.DecodeTokens(ctx, prompt[:8], 0, 0)
	assert.ErrorIs(t, err, ErrAborted)
	assert.ErrorIs(t, err, context.Canceled)

	// Cancelled while llama.cpp computes: the abort callback stops it.
	ctx, cancel = context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = c.DecodeTokens(ctx, prompt, 0, 0)
	elapsed := time.Since(start)
	assert.ErrorIs(t, err, ErrAborted)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	t.Logf("aborted after %v", elapsed)

	// The context is usable again.
	require.NoError(t, c.MemoryClear(true))
	require.NoError(t, c.DecodeTokens(t.Context(), prompt[:16], 0, 0))
}

// The cancellation callback writes into C memory that Close frees: once disarm has
// returned, that write must have happened (or never will), else it lands in freed memory.
func TestDisarmWaitsForCancellation(t *testing.T) {
	m := loadTiny(t)
	c := newTestContext(t, m, 64)
	for range 200 {
		ctx, cancel := context.WithCancel(t.Context())
		cancel() // the callback starts on its own goroutine at once
		c.mu.Lock()
		disarm := c.arm(ctx)
		epoch := c.epoch
		disarm()
		aborted := atomic.LoadInt32((*int32)(unsafe.Pointer(&c.abort.aborted)))
		c.mu.Unlock()
		require.Equal(t, epoch, aborted, "the callback was still pending after disarm")
	}
}

func TestContextConcurrency(t *testing.T) {
	m := loadTiny(t)
	c, err := m.NewContext(&ContextParams{NCtx: 4096, NBatch: 4096})
	require.NoError(t, err)
	prompt := longPrompt(4096)

	// A second goroutine using the context during a decode gets ErrContextBusy: the
	// decode holds the context from the moment it arms its cancellation (which asks
	// ctx.Done) until it returns; here it waits there until the check is done.
	gate := &armGate{Context: context.Background(), armed: make(chan struct{}), proceed: make(chan struct{})}
	done := make(chan error, 1)
	go func() { done <- c.DecodeTokens(gate, prompt, 0, 0) }()
	<-gate.armed
	_, busy := c.Logits(-1)
	assert.ErrorIs(t, busy, ErrContextBusy)
	close(gate.proceed)

	// Close while the other goroutine decodes: the decode is aborted, Close waits.
	require.NoError(t, c.Close())
	err = <-done
	if err != nil { // the decode may have finished before Close reached it
		assert.ErrorIs(t, err, ErrAborted)
		assert.ErrorIs(t, err, ErrClosed)
	}

	// Many goroutines share one model, each with its own context.
	var wg sync.WaitGroup
	results := make([][]Token, 4)
	for i := range results {
		wg.Go(func() {
			ctx, err := m.NewContext(&ContextParams{NCtx: 128, Threads: 1})
			if !assert.NoError(t, err) {
				return
			}
			defer ctx.Close()
			toks, err := m.Tokenize("shared model", AddSpecial)
			if !assert.NoError(t, err) {
				return
			}
			if !assert.NoError(t, ctx.DecodeTokens(context.Background(), toks, 0, 0)) {
				return
			}
			l, err := ctx.Logits(-1)
			if assert.NoError(t, err) {
				results[i] = []Token{argmax(l)}
			}
		})
	}
	wg.Wait()
	for _, r := range results[1:] {
		assert.Equal(t, results[0], r)
	}
}

func TestPerfAndInfo(t *testing.T) {
	m := loadTiny(t)
	c, err := m.NewContext(&ContextParams{NCtx: 128, Threads: 1, ThreadsBatch: 2})
	require.NoError(t, err)
	defer c.Close()
	th, tb := c.Threads()
	assert.Equal(t, 1, th)
	assert.Equal(t, 2, tb)
	assert.Equal(t, 256, c.NCtx(), "rounded up to a multiple of 256")
	greedy(t, c, []Token{1, 2, 3, 4}, 3)
	p, err := c.Perf()
	require.NoError(t, err)
	assert.GreaterOrEqual(t, p.PromptTokens, 4)
	assert.GreaterOrEqual(t, p.EvalTokens, 2)
	assert.Greater(t, p.EvalTokensPerSecond(), 0.0)
	require.NoError(t, c.PerfReset())
	p, err = c.Perf()
	require.NoError(t, err)
	assert.Zero(t, p.EvalTokens)
	want := greedy(t, c, []Token{1, 2, 3, 4}, 3)
	require.NoError(t, c.SetThreads(2, 2))
	assert.Equal(t, want, greedy(t, c, []Token{1, 2, 3, 4}, 3))
	require.NoError(t, c.SetThreads(6, 5), "more threads than the pool started with: a new pool")
	assert.Equal(t, want, greedy(t, c, []Token{1, 2, 3, 4}, 3))
	assert.ErrorIs(t, c.SetThreads(0, 1), ErrInvalidParams)

	assert.NotEmpty(t, SystemInfo())
	assert.NotEmpty(t, Version())
	devs := Devices()
	require.NotEmpty(t, devs)
	assert.Equal(t, DeviceCPU, devs[len(devs)-1].Type)
	assert.Positive(t, PhysicalCores())
}

// armGate is a context whose first Done call (a decode arming its cancellation, with the
// context claimed) signals armed and waits for proceed.
type armGate struct {
	context.Context
	armed, proceed chan struct{}
	once           sync.Once
}

func (g *armGate) Done() <-chan struct{} {
	g.once.Do(func() {
		close(g.armed)
		<-g.proceed
	})
	return g.Context.Done()
}
