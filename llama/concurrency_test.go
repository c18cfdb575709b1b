package llama

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// concurrentRun is what one goroutine generates in one round.
type concurrentRun struct {
	greedy, seeded []Token
}

// generateRun generates from prompt on c, greedily and with a seeded random sampler,
// each from an empty cache. It reports errors with assert (it runs on spawned goroutines).
func generateRun(t *testing.T, m *Model, c *Context, prompt string, seed uint32, n int) (concurrentRun, bool) {
	var run concurrentRun
	toks, err := m.Tokenize(prompt, AddSpecial)
	if !assert.NoError(t, err) {
		return run, false
	}
	for i, out := range []*[]Token{&run.greedy, &run.seeded} {
		stages := []Stage{Greedy()}
		if i == 1 {
			stages = []Stage{TopK(40), TopP(0.95), Temp(0.9), Seed(seed)}
		}
		s, err := NewSampler(m, stages...)
		if !assert.NoError(t, err) {
			return run, false
		}
		if !assert.NoError(t, c.MemoryClear(true)) {
			s.Close()
			return run, false
		}
		for g, err := range c.Generate(context.Background(), toks, s, &GenerateParams{MaxTokens: n, IgnoreEOG: true}) {
			if !assert.NoError(t, err) {
				s.Close()
				return run, false
			}
			*out = append(*out, g.Token)
		}
		s.Close()
	}
	return run, true
}

// TestConcurrentGeneration: 16 goroutines share one Model, each generating on its own
// Context for several rounds (a different prompt each round); every output equals what
// a single goroutine generates for the same prompt and seed.
func TestConcurrentGeneration(t *testing.T) {
	const (
		goroutines = 16
		rounds     = 3
		tokens     = 8
	)
	m := loadTiny(t)
	prompts := make([]string, goroutines)
	for i := range prompts {
		prompts[i] = fmt.Sprintf("Story %d: once upon a time, in a land of %d rivers,", i, i*7+3)
	}
	params := &ContextParams{NCtx: 256, NBatch: 64, Threads: 1}

	// The reference: one goroutine, one context, every prompt in turn.
	ref := make([]concurrentRun, goroutines)
	c, err := m.NewContext(params)
	require.NoError(t, err)
	for i, p := range prompts {
		var ok bool
		ref[i], ok = generateRun(t, m, c, p, uint32(i), tokens)
		require.True(t, ok)
		require.Len(t, ref[i].greedy, tokens)
	}
	require.NoError(t, c.Close())
	distinct := map[string]bool{}
	for _, r := range ref {
		distinct[fmt.Sprint(r.greedy, r.seeded)] = true
	}
	require.Greater(t, len(distinct), goroutines/2, "the prompts lead to different outputs")

	got := make([][rounds]concurrentRun, goroutines)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for g := range goroutines {
		wg.Go(func() {
			c, err := m.NewContext(params)
			if !assert.NoError(t, err) {
				return
			}
			defer c.Close()
			<-start
			for r := range rounds {
				p := (g + r) % goroutines
				if run, ok := generateRun(t, m, c, prompts[p], uint32(p), tokens); ok {
					got[g][r] = run
				}
			}
		})
	}
	close(start)
	wg.Wait()
	for g := range goroutines {
		for r := range rounds {
			p := (g + r) % goroutines
			assert.Equal(t, ref[p].greedy, got[g][r].greedy, "goroutine %d round %d greedy", g, r)
			assert.Equal(t, ref[p].seeded, got[g][r].seeded, "goroutine %d round %d seeded", g, r)
		}
	}
}
