package engine_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/llamago/llamago/internal/testmodel"
	"github.com/llamago/llamago/llama"
	"github.com/llamago/llamago/llama/engine"
	"github.com/llamago/llamago/llama/gguf"
)

func TestMain(m *testing.M) { os.Exit(testmodel.Main(m)) }

func loadModel(t testing.TB) *llama.Model {
	t.Helper()
	m, err := llama.LoadModel(context.Background(), testmodel.Path(t, "llama-tiny", gguf.TypeQ8_0), nil)
	require.NoError(t, err)
	t.Cleanup(func() { m.Close() })
	return m
}

func newEngine(t testing.TB, m *llama.Model, cfg *engine.Params) *engine.Engine {
	t.Helper()
	e, err := engine.New(m, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { e.Close() })
	return e
}

func greedy() *llama.SamplingParams {
	p := llama.DefaultSamplingParams()
	p.Temperature = 0
	return &p
}

// prompts are token sequences of different lengths; several share a prefix.
func prompts(t testing.TB, m *llama.Model, n int) [][]llama.Token {
	t.Helper()
	system := "You are a helpful assistant who answers every question briefly and precisely. "
	var out [][]llama.Token
	for i := range n {
		text := fmt.Sprintf("Question %d: what is %d times %d?", i, i+3, 7*i+1)
		if i%2 == 0 {
			text = system + text
		}
		toks, err := m.Tokenize(text, llama.AddSpecial)
		require.NoError(t, err)
		out = append(out, toks)
	}
	return out
}

// alone generates greedily with a fresh context of its own: the reference output.
func alone(t testing.TB, m *llama.Model, prompt []llama.Token, n int) []llama.Token {
	t.Helper()
	c, err := m.NewContext(&llama.ContextParams{NCtx: 512})
	require.NoError(t, err)
	defer c.Close()
	s, err := llama.NewSamplerFromParams(m, greedy())
	require.NoError(t, err)
	defer s.Close()
	var out []llama.Token
	for g, err := range c.Generate(t.Context(), prompt, s, &llama.GenerateParams{MaxTokens: n, IgnoreEOG: true}) {
		require.NoError(t, err)
		out = append(out, g.Token)
	}
	return out
}

func collect(ctx context.Context, e *engine.Engine, req *engine.Request) ([]llama.Token, string, error) {
	var toks []llama.Token
	var text string
	for d, err := range e.Generate(ctx, req) {
		if err != nil {
			return toks, text, err
		}
		toks = append(toks, d.Tokens...)
		text += d.Text
	}
	return toks, text, nil
}

func TestConcurrentRequestsMatchAlone(t *testing.T) {
	m := loadModel(t)
	const n, tokens = 12, 20
	ps := prompts(t, m, n)
	want := make([][]llama.Token, n)
	for i, p := range ps {
		want[i] = alone(t, m, p, tokens)
	}
	for _, tc := range []struct{ device, split bool }{{false, false}, {true, false}, {false, true}} {
		t.Run(fmt.Sprintf("device_sampling=%v,split_cache=%v", tc.device, tc.split), func(t *testing.T) {
			e := newEngine(t, m, &engine.Params{Slots: 4, DeviceSampling: tc.device, SplitCache: tc.split})
			got := make([][]llama.Token, n)
			errs := make([]error, n)
			results := make([]engine.Result, n)
			var wg sync.WaitGroup
			for i := range n {
				req := &engine.Request{Prompt: ps[i], Sampling: greedy(), MaxTokens: tokens, IgnoreEOG: true, Result: &results[i]}
				switch i % 3 {
				case 0: // greedy after a stage without a device stage of ours: the CPU
					s, err := llama.NewSampler(m, llama.Temp(0.5), llama.Greedy())
					require.NoError(t, err)
					req.Sampler = s
				case 1: // led by TopK: narrowed on the device
					s, err := llama.NewSampler(m, llama.TopK(40), llama.Greedy())
					require.NoError(t, err)
					req.Sampler = s
				}
				wg.Go(func() { got[i], _, errs[i] = collect(t.Context(), e, req) })
			}
			wg.Wait()
			for i := range n {
				assert.NoError(t, errs[i], "request %d", i)
				assert.Equal(t, want[i], got[i], "request %d", i)
				assert.Equal(t, tc.device && i%3 != 0, results[i].DeviceSampling, "request %d", i)
			}
			mt := e.Metrics()
			assert.EqualValues(t, n, mt.Requests)
			assert.EqualValues(t, n*tokens, mt.GeneratedTokens)
			if !tc.split {
				assert.Positive(t, mt.PromptCacheHits, "the shared system prompt is reused")
			}
			assert.Less(t, mt.Steps, uint64(n*tokens), "requests share decode calls")
		})
	}
}

func TestPrefixCacheReuse(t *testing.T) {
	m := loadModel(t)
	e := newEngine(t, m, &engine.Params{Slots: 2})
	ps := prompts(t, m, 4) // 0 and 2 share the system prompt
	var first, second engine.Result
	_, _, err := collect(t.Context(), e, &engine.Request{Prompt: ps[0], Sampling: greedy(), MaxTokens: 4, Result: &first})
	require.NoError(t, err)
	toks, _, err := collect(t.Context(), e, &engine.Request{Prompt: ps[2], Sampling: greedy(), MaxTokens: 8, IgnoreEOG: true, Result: &second})
	require.NoError(t, err)
	assert.Zero(t, first.CachedTokens)
	assert.Greater(t, second.CachedTokens, 10, "the system prompt came from the cache")
	assert.Less(t, second.CachedTokens, len(ps[2]))
	assert.Equal(t, alone(t, m, ps[2], 8), toks, "output with a reused prefix equals a fresh decode")

	// The same prompt again: everything but its last token is reused.
	var third engine.Result
	toks, _, err = collect(t.Context(), e, &engine.Request{Prompt: ps[2], Sampling: greedy(), MaxTokens: 8, IgnoreEOG: true, Result: &third})
	require.NoError(t, err)
	assert.Equal(t, len(ps[2])-1, third.CachedTokens)
	assert.Equal(t, alone(t, m, ps[2], 8), toks)
	assert.EqualValues(t, 2, e.Metrics().PromptCacheHits)
}

func TestCancelFreesSlot(t *testing.T) {
	m := loadModel(t)
	e := newEngine(t, m, &engine.Params{Slots: 1})
	ps := prompts(t, m, 2)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	n := 0
	var res engine.Result
	var gotErr error
	for d, err := range e.Generate(ctx, &engine.Request{Prompt: ps[0], IgnoreEOG: true, Result: &res}) {
		if err != nil {
			gotErr = err
			break
		}
		n += len(d.Tokens)
		if n >= 3 {
			cancel()
		}
	}
	require.Error(t, gotErr)
	assert.ErrorIs(t, gotErr, llama.ErrAborted)
	assert.ErrorIs(t, gotErr, context.Canceled)
	assert.Equal(t, llama.FinishCancelled, res.FinishReason)
	assert.Eventually(t, func() bool { return e.Metrics().Active == 0 }, 5*time.Second, time.Millisecond)

	// The one slot serves the next request, and a consumer that stops ranging frees it too.
	for range e.Generate(t.Context(), &engine.Request{Prompt: ps[1], IgnoreEOG: true}) {
		break
	}
	assert.Eventually(t, func() bool { return e.Metrics().Active == 0 }, 5*time.Second, time.Millisecond)
	toks, _, err := collect(t.Context(), e, &engine.Request{Prompt: ps[1], Sampling: greedy(), MaxTokens: 5, IgnoreEOG: true})
	require.NoError(t, err)
	assert.Equal(t, alone(t, m, ps[1], 5), toks)
}

func TestBadRequests(t *testing.T) {
	m := loadModel(t)
	e := newEngine(t, m, &engine.Params{Slots: 2})
	long := make([]llama.Token, e.NCtx())
	for i := range long {
		long[i] = llama.Token(100 + i%50)
	}
	bad := llama.DefaultSamplingParams()
	bad.Grammar = "root ::= ("
	for name, tc := range map[string]struct {
		req  *engine.Request
		want error
	}{
		"nil":                      {nil, llama.ErrInvalidBatch},
		"empty prompt":             {&engine.Request{}, llama.ErrInvalidBatch},
		"invalid token":            {&engine.Request{Prompt: []llama.Token{1, -5}}, llama.ErrInvalidToken},
		"token too high":           {&engine.Request{Prompt: []llama.Token{llama.Token(m.Vocab().NTokens)}}, llama.ErrInvalidToken},
		"prompt fills the context": {&engine.Request{Prompt: long}, engine.ErrTooLong},
		"max tokens past the end":  {&engine.Request{Prompt: long[:10], MaxTokens: e.NCtx()}, llama.ErrInputTooLong},
		"negative max tokens":      {&engine.Request{Prompt: long[:10], MaxTokens: -1}, llama.ErrInvalidParams},
		"bad grammar":              {&engine.Request{Prompt: long[:10], Sampling: &bad}, llama.ErrGrammar},
	} {
		t.Run(name, func(t *testing.T) {
			var res engine.Result
			if tc.req != nil {
				tc.req.Result = &res
			}
			_, _, err := collect(t.Context(), e, tc.req)
			assert.ErrorIs(t, err, tc.want)
			if tc.req != nil {
				assert.Equal(t, llama.FinishError, res.FinishReason)
			}
		})
	}
	// The engine still serves.
	toks, _, err := collect(t.Context(), e, &engine.Request{Prompt: long[:10], MaxTokens: 3, IgnoreEOG: true})
	require.NoError(t, err)
	assert.Len(t, toks, 3)
}

func TestQueueFullAndClose(t *testing.T) {
	m := loadModel(t)
	e, err := engine.New(m, &engine.Params{Slots: 1, MaxQueue: 1})
	require.NoError(t, err)
	ps := prompts(t, m, 3)

	// One request generates (it never ends by itself), one waits, the third is refused.
	first := make(chan error, 1)
	started := make(chan struct{})
	go func() {
		once := sync.Once{}
		var gotErr error
		for _, err := range e.Generate(context.Background(), &engine.Request{Prompt: ps[0], IgnoreEOG: true, MaxTokens: 400}) {
			once.Do(func() { close(started) })
			gotErr = err
		}
		first <- gotErr
	}()
	<-started
	second := make(chan error, 1)
	go func() {
		_, _, err := collect(context.Background(), e, &engine.Request{Prompt: ps[1], IgnoreEOG: true})
		second <- err
	}()
	require.Eventually(t, func() bool { return e.Metrics().Queued == 1 }, 5*time.Second, time.Millisecond)
	_, _, err = collect(t.Context(), e, &engine.Request{Prompt: ps[2]})
	assert.ErrorIs(t, err, engine.ErrQueueFull)
	assert.EqualValues(t, 1, e.Metrics().Rejected)

	// Close ends the generating and the waiting request with ErrClosed; nothing hangs.
	require.NoError(t, e.Close())
	assert.ErrorIs(t, <-first, engine.ErrClosed)
	assert.ErrorIs(t, <-second, engine.ErrClosed)
	_, _, err = collect(t.Context(), e, &engine.Request{Prompt: ps[2]})
	assert.ErrorIs(t, err, engine.ErrClosed)
	assert.NoError(t, e.Close(), "Close twice")
}

func TestShutdownDrains(t *testing.T) {
	m := loadModel(t)
	e, err := engine.New(m, &engine.Params{Slots: 2})
	require.NoError(t, err)
	ps := prompts(t, m, 4)
	errs := make(chan error, len(ps))
	lens := make(chan int, len(ps))
	for _, p := range ps {
		go func() {
			toks, _, err := collect(context.Background(), e, &engine.Request{Prompt: p, IgnoreEOG: true, MaxTokens: 16})
			lens <- len(toks)
			errs <- err
		}()
	}
	require.Eventually(t, func() bool { return e.Metrics().Requests == uint64(len(ps)) }, 5*time.Second, time.Millisecond)
	require.NoError(t, e.Shutdown(t.Context()))
	for range ps {
		assert.NoError(t, <-errs)
		assert.Equal(t, 16, <-lens, "every admitted request finished")
	}
	_, _, err = collect(t.Context(), e, &engine.Request{Prompt: ps[0]})
	assert.ErrorIs(t, err, engine.ErrClosed)
}

func TestStopStrings(t *testing.T) {
	m := loadModel(t)
	e := newEngine(t, m, &engine.Params{Slots: 2})
	p := prompts(t, m, 1)[0]
	_, full, err := collect(t.Context(), e, &engine.Request{Prompt: p, Sampling: greedy(), MaxTokens: 24, IgnoreEOG: true})
	require.NoError(t, err)
	require.Greater(t, len(full), 8)
	stop := full[len(full)/2 : len(full)/2+3]
	var res engine.Result
	toks, text, err := collect(t.Context(), e, &engine.Request{Prompt: p, Sampling: greedy(), MaxTokens: 24, IgnoreEOG: true, Stop: []string{stop}, Result: &res})
	require.NoError(t, err)
	want := full[:len(full)/2]
	if i := indexOf(full, stop); i < len(want) {
		want = full[:i]
	}
	assert.Equal(t, want, text)
	assert.Equal(t, llama.FinishStop, res.FinishReason)

	// The stopped request's next token was being decoded when the stop string ended it:
	// a request continuing its text reuses that slot's cache and still generates what
	// it generates alone.
	cont := append(append([]llama.Token(nil), p...), toks...)
	res = engine.Result{}
	got, _, err := collect(t.Context(), e, &engine.Request{Prompt: cont, Sampling: greedy(), MaxTokens: 8, IgnoreEOG: true, Result: &res})
	require.NoError(t, err)
	assert.Equal(t, alone(t, m, cont, 8), got)
	assert.Equal(t, len(cont)-1, res.CachedTokens, "the whole prompt but its last token came from the cache")
}

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

// A long prompt is decoded in chunks between the generation steps of the others:
// a streaming request keeps getting tokens while it is read.
func TestLongPromptDoesNotStallStreams(t *testing.T) {
	m := loadModel(t)
	ps := prompts(t, m, 2)
	// 300 prompt tokens at most 32 per step: at least 10 steps. A shared cache adds the
	// stream's token to each; with a split one, steps of prompt and steps of next tokens
	// take turns.
	t.Run("shared cache", func(t *testing.T) { testLongPrompt(t, m, ps, false) })
	t.Run("split cache", func(t *testing.T) { testLongPrompt(t, m, ps, true) })
}

func testLongPrompt(t *testing.T, m *llama.Model, ps [][]llama.Token, split bool) {
	e := newEngine(t, m, &engine.Params{Slots: 2, SplitCache: split, Context: &llama.ContextParams{NCtx: 1024, NBatch: 32}})
	long := make([]llama.Token, 0, 300)
	for len(long) < 300 {
		long = append(long, ps[1]...)
	}

	var mu sync.Mutex
	var streamed int
	longFirst := -1
	done := make(chan struct{})
	go func() {
		defer close(done)
		for d, err := range e.Generate(t.Context(), &engine.Request{Prompt: ps[0], IgnoreEOG: true, MaxTokens: 60}) {
			if err != nil {
				return
			}
			mu.Lock()
			streamed += len(d.Tokens)
			mu.Unlock()
		}
	}()
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return streamed > 0 }, 5*time.Second, time.Millisecond)
	mu.Lock()
	before := streamed
	mu.Unlock()
	for d, err := range e.Generate(t.Context(), &engine.Request{Prompt: long[:300], IgnoreEOG: true, MaxTokens: 1}) {
		require.NoError(t, err)
		if len(d.Tokens) > 0 && longFirst < 0 {
			mu.Lock()
			longFirst = streamed
			mu.Unlock()
		}
	}
	<-done
	assert.GreaterOrEqual(t, longFirst-before, 8, "the stream advanced while the long prompt was read")
}

// Requests sent together to an idle engine read their prompts in one step: the whole
// burst takes as many steps as one of its requests alone.
func TestBurstStartsTogether(t *testing.T) {
	m := loadModel(t)
	ps := prompts(t, m, 4)
	steps := func(n int) uint64 {
		// A wait long enough for goroutines on a loaded machine to arrive.
		e := newEngine(t, m, &engine.Params{Slots: 4, BurstWait: 50 * time.Millisecond})
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				<-start
				_, _, err := collect(t.Context(), e, &engine.Request{Prompt: ps[i], Sampling: greedy(), MaxTokens: 4, IgnoreEOG: true})
				assert.NoError(t, err)
			})
		}
		close(start)
		wg.Wait()
		return e.Metrics().Steps
	}
	alone := steps(1)
	assert.Equal(t, alone, steps(4), "steps of one request alone, of four sent together")
}

// With a split cache, requests sent together read all their prompts before any of
// them generates, as llama-batched-bench does: a batch with next tokens beside prompt
// chunks would be cut into more micro-batches. (Prompts that fill more batches take
// turns with steps of next tokens: TestLongPromptDoesNotStallStreams.)
func TestSplitCacheReadsPromptsFirst(t *testing.T) {
	m := loadModel(t)
	const n, length, tokens = 4, 24, 3
	ps := prompts(t, m, n)
	for i := range ps {
		for len(ps[i]) < length {
			ps[i] = append(ps[i], ps[i]...)
		}
		ps[i] = ps[i][:length]
	}
	e := newEngine(t, m, &engine.Params{Slots: n, SplitCache: true, BurstWait: 50 * time.Millisecond,
		Context: &llama.ContextParams{NCtx: 512, NBatch: 2 * length}})
	got := make([][]llama.Token, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			var err error
			got[i], _, err = collect(t.Context(), e, &engine.Request{Prompt: ps[i], Sampling: greedy(), MaxTokens: tokens, IgnoreEOG: true})
			assert.NoError(t, err)
		})
	}
	close(start)
	wg.Wait()
	for i := range n {
		assert.Equal(t, alone(t, m, ps[i], tokens), got[i], "request %d", i)
	}
	// Two steps of two prompts each, then one step per further token of all four.
	assert.EqualValues(t, 2+tokens-1, e.Metrics().Steps)
}

// With DeviceSampling, requests with the default chain (led by TopK) sample from rows
// narrowed on the device, all of a step in one narrowing: the same draws as from every
// logit on the CPU, seed by seed.
func TestDeviceSamplingDefaultChain(t *testing.T) {
	m := loadModel(t)
	const n, tokens = 6, 24
	ps := prompts(t, m, n)
	run := func(device bool) ([][]llama.Token, []engine.Result) {
		e := newEngine(t, m, &engine.Params{Slots: n, DeviceSampling: device})
		got := make([][]llama.Token, n)
		results := make([]engine.Result, n)
		var wg sync.WaitGroup
		for i := range n {
			sp := llama.DefaultSamplingParams()
			sp.Seed, sp.Temperature = uint32(i+1), 1.5
			wg.Go(func() {
				var err error
				got[i], _, err = collect(t.Context(), e, &engine.Request{Prompt: ps[i], Sampling: &sp, MaxTokens: tokens, IgnoreEOG: true, Result: &results[i]})
				assert.NoError(t, err)
			})
		}
		wg.Wait()
		return got, results
	}
	cpu, _ := run(false)
	dev, results := run(true)
	for i := range n {
		assert.Equal(t, cpu[i], dev[i], "request %d", i)
		assert.True(t, results[i].DeviceSampling, "request %d", i)
		assert.Greater(t, len(slices.Compact(slices.Sorted(slices.Values(cpu[i])))), 8, "request %d's draws vary", i)
	}
}
