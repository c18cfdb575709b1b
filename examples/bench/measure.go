package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"time"

	"github.com/llamago/llamago/llama"
)

// runner does what llama-bench's test_prompt and test_gen do, through llamago: decode
// batches of random tokens (the first one BOS when the vocabulary adds it) and wait for
// the device. Nothing is sampled. The loops make no Go heap allocations and two cgo
// calls per decode (llama_decode and llama_get_logits_ith, which synchronizes like
// llama_synchronize).
type runner struct {
	c      *llama.Context
	b      *llama.Batch
	nBatch int
	nVocab uint64
	bos    llama.Token
	addBOS bool
	pos    llama.Pos // the next position of sequence 0
	rng    uint64
}

func newRunner(m *llama.Model, c *llama.Context, nBatch int) (*runner, error) {
	b, err := llama.NewBatch(nBatch, 1)
	if err != nil {
		return nil, err
	}
	v := m.Vocab()
	return &runner{c: c, b: b, nBatch: nBatch, nVocab: uint64(v.NTokens), bos: v.BOS, addBOS: v.AddBOS && v.BOS >= 0,
		rng: 0x9E3779B97F4A7C15}, nil
}

func (r *runner) Close() error { return r.b.Close() }

// token is a uniformly random token id (splitmix64; llama-bench uses rand() % n_vocab).
func (r *runner) token() llama.Token {
	r.rng += 0x9E3779B97F4A7C15
	z := r.rng
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	z ^= z >> 31
	return llama.Token(z % r.nVocab)
}

// clear empties the KV cache (without zeroing it), as llama_memory_clear(mem, false).
func (r *runner) clear() error {
	r.pos = 0
	return r.c.MemoryClear(false)
}

// sync waits for the decode's results, as llama_synchronize. The view itself is unused;
// a context without logits (embeddings) has nothing to wait for on the CPU.
func (r *runner) sync() {
	_, _ = r.c.LogitsView(-1)
}

// prompt decodes n random tokens in batches of nBatch, the last token of each with
// output, then synchronizes: llama-bench's test_prompt.
func (r *runner) prompt(n int) error {
	ctx := context.Background() // no cancellation: arming it would cost an allocation per decode
	for done := 0; done < n; {
		k := min(n-done, r.nBatch)
		r.b.Clear()
		for i := range k {
			t := r.token()
			if done == 0 && i == 0 && r.addBOS {
				t = r.bos
			}
			if err := r.b.Add(t, r.pos+llama.Pos(i), i == k-1, 0); err != nil {
				return err
			}
		}
		if err := r.c.Decode(ctx, r.b); err != nil {
			return fmt.Errorf("prompt batch: %w", err)
		}
		r.pos += llama.Pos(k)
		done += k
	}
	r.sync()
	return nil
}

// gen decodes n single tokens, synchronizing after each: llama-bench's test_gen.
func (r *runner) gen(n int) error {
	ctx := context.Background()
	t := r.token()
	if r.addBOS {
		t = r.bos
	}
	for range n {
		r.b.Clear()
		if err := r.b.Add(t, r.pos, true, 0); err != nil {
			return err
		}
		if err := r.c.Decode(ctx, r.b); err != nil {
			return fmt.Errorf("generation: %w", err)
		}
		r.pos++
		r.sync()
		t = r.token()
	}
	return nil
}

// measure runs one llama-bench test: a warm-up (unless disabled), then per repetition:
// clear the cache, fill it to the depth (untimed), and time the prompt and generation,
// wall clock around the whole test as llama-bench does. It returns the samples in ns.
func (r *runner) measure(t *instance, reps int, warmup bool, progress func(format string, a ...any)) ([]uint64, error) {
	// One OS thread for every decode, as llama-bench has (see llama's package doc).
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := r.clear(); err != nil {
		return nil, err
	}
	if warmup {
		if t.nPrompt > 0 {
			progress("warmup prompt run")
			if err := r.prompt(t.nPrompt); err != nil {
				return nil, fmt.Errorf("warm-up: %w", err)
			}
		}
		if t.nGen > 0 {
			progress("warmup generation run")
			if err := r.gen(1); err != nil {
				return nil, fmt.Errorf("warm-up: %w", err)
			}
		}
	}
	samples := make([]uint64, 0, reps)
	for i := range reps {
		if err := r.clear(); err != nil {
			return nil, err
		}
		if t.nDepth > 0 {
			progress("depth run %d/%d", i+1, reps)
			if err := r.prompt(t.nDepth); err != nil {
				return nil, fmt.Errorf("depth: %w", err)
			}
		}
		start := time.Now()
		if t.nPrompt > 0 {
			progress("prompt run %d/%d", i+1, reps)
			if err := r.prompt(t.nPrompt); err != nil {
				return nil, err
			}
		}
		if t.nGen > 0 {
			progress("generation run %d/%d", i+1, reps)
			if err := r.gen(t.nGen); err != nil {
				return nil, err
			}
		}
		samples = append(samples, uint64(time.Since(start)))
	}
	return samples, nil
}

// appPrompt is the text an application-path generation starts from: as close to one
// token as the vocabulary allows (only BOS when the vocabulary adds one), so that
// the run decodes as many tokens as llama-bench's tgN: the prompt, then N-1 tokens.
func appPrompt(m *llama.Model) (string, int, error) {
	if v := m.Vocab(); v.AddBOS && v.BOS >= 0 {
		if toks, err := m.Tokenize("", llama.AddSpecial|llama.ParseSpecial); err == nil && len(toks) == 1 {
			return "", 1, nil
		}
	}
	best, bestN := "", 0
	for _, s := range []string{"Hello", "The", "A", "a", "1", "I"} {
		toks, err := m.Tokenize(s, llama.AddSpecial|llama.ParseSpecial)
		if err != nil {
			return "", 0, err
		}
		if len(toks) > 0 && (bestN == 0 || len(toks) < bestN) {
			best, bestN = s, len(toks)
		}
	}
	if bestN == 0 {
		return "", 0, errors.New("no prompt text tokenizes to a token")
	}
	return best, bestN, nil
}

// measureApp times generation as applications run it: GenerateText streaming text
// from a one-token prompt, the default sampler chain choosing each token (where
// GenerateText places it; attached with SetBackendSampler first with app "device").
// Per repetition the cache is cleared and filled to the depth untimed; the time covers
// the whole stream, so t/s = N / time compares with llama-bench's tgN. With a breakdown
// writer it then runs appBreakdown, saying where sampling ran.
func measureApp(ctx context.Context, m *llama.Model, c *llama.Context, r *runner, t *instance, prompt string,
	reps int, warmup bool, progress func(format string, a ...any), breakdown io.Writer) (samples []uint64, err error) {
	s, err := llama.NewSamplerFromParams(m, nil)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	sampling := "cpu" // where the last generation sampled
	if t.app == "device" {
		if _, err := c.SetBackendSampler(0, s); err != nil {
			return nil, err
		}
		defer c.SetBackendSampler(0, nil)
	}
	generate := func(n int) (int, error) {
		for _, err := range c.GenerateText(ctx, prompt, s, &llama.GenerateParams{MaxTokens: n, IgnoreEOG: true}) {
			if err != nil {
				return 0, err
			}
		}
		res := c.LastGeneration()
		if res.GeneratedTokens != n {
			return 0, fmt.Errorf("generated %d tokens, want %d (%s)", res.GeneratedTokens, n, res.FinishReason)
		}
		sampling = map[bool]string{false: "cpu", true: "device"}[res.DeviceSampling]
		return res.GeneratedTokens, nil
	}
	if warmup {
		progress("warmup generation run")
		if err := r.clear(); err != nil {
			return nil, err
		}
		if _, err := generate(1); err != nil {
			return nil, fmt.Errorf("warm-up: %w", err)
		}
	}
	for i := range reps {
		if err := r.clear(); err != nil {
			return nil, err
		}
		if err := s.Reset(); err != nil {
			return nil, err
		}
		if t.nDepth > 0 {
			progress("depth run %d/%d", i+1, reps)
			if err := r.prompt(t.nDepth); err != nil {
				return nil, fmt.Errorf("depth: %w", err)
			}
		}
		progress("app generation run %d/%d", i+1, reps)
		start := time.Now()
		if _, err := generate(t.nGen); err != nil {
			return nil, err
		}
		samples = append(samples, uint64(time.Since(start)))
	}
	if breakdown != nil {
		if err := appBreakdown(ctx, m, c, r, t, s, prompt, reps, sampling, breakdown); err != nil {
			return nil, fmt.Errorf("breakdown: %w", err)
		}
	}
	return samples, nil
}
