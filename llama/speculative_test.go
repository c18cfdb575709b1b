package llama

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/llamago/llamago/internal/synth"
	"github.com/llamago/llamago/llama/gguf"
)

// generateTokens runs a generation in a fresh sequence 0 of c and returns its tokens,
// its result and the sequence's last cached position afterwards.
func generateTokens(t *testing.T, c *Context, prompt []Token, s *Sampler, o GenerateParams) ([]Token, GenerateResult, Pos) {
	t.Helper()
	_, err := c.MemorySeqRemove(0, -1, -1)
	require.NoError(t, err)
	var out []Token
	for g, err := range c.Generate(t.Context(), prompt, s, &o) {
		require.NoError(t, err)
		out = append(out, g.Token)
	}
	res := c.LastGeneration()
	_, last, err := c.MemorySeqPosRange(0)
	require.NoError(t, err)
	return out, res, last
}

// otherTiny loads llama-tiny with other random weights: a draft model that shares the
// vocabulary and disagrees with the target most of the time.
func otherTiny(t *testing.T) *Model {
	t.Helper()
	s, err := synth.ShapeByName("llama-tiny")
	require.NoError(t, err)
	p := filepath.Join(t.TempDir(), "other.gguf")
	require.NoError(t, synth.WriteFile(p, synth.Options{Shape: "llama-tiny", VocabPath: vocabPath(t, s.Vocab), Type: gguf.TypeF16, Seed: 7}))
	m, err := LoadModel(t.Context(), p, &ModelParams{GPULayers: 0})
	require.NoError(t, err)
	t.Cleanup(func() { m.Close() })
	return m
}

// drafterFunc adapts a function to Drafter.
type drafterFunc func(history []Token, limit int) []Token

func (f drafterFunc) Draft(_ context.Context, history []Token, limit int) ([]Token, error) {
	return f(history, limit), nil
}

// Greedy output is token for token the same with any drafter: one that is always
// right (the target itself), one that is mostly wrong (other weights), prompt lookup,
// and one that drafts noise; the cache ends where plain decoding leaves it.
func TestSpeculativeGreedyIdentical(t *testing.T) {
	m := loadTiny(t)
	c, err := m.NewContext(&ContextParams{NCtx: 1024, NBatch: 64})
	require.NoError(t, err)
	defer c.Close()
	greedy, err := NewSampler(m, Greedy())
	require.NoError(t, err)
	defer greedy.Close()
	prompt, err := m.Tokenize("one two three four, one two three four, one two three", AddSpecial)
	require.NoError(t, err)

	const n = 48
	want, plain, wantLast := generateTokens(t, c, prompt, greedy, GenerateParams{MaxTokens: n, IgnoreEOG: true})
	require.Len(t, want, n)
	assert.Zero(t, plain.Drafted)

	self, err := NewModelDrafter(m, m, &ModelDrafterParams{Context: &ContextParams{NCtx: 1024}, MinProb: -1})
	require.NoError(t, err)
	defer self.Close()
	other, err := NewModelDrafter(m, otherTiny(t), &ModelDrafterParams{Context: &ContextParams{NCtx: 1024}, MinProb: -1})
	require.NoError(t, err)
	defer other.Close()
	noise := drafterFunc(func(h []Token, limit int) []Token {
		d := make([]Token, limit)
		for i := range d {
			d[i] = Token((int(h[len(h)-1])*31 + i*7919) % m.Vocab().NTokens)
		}
		return d
	})
	for _, tc := range []struct {
		name     string
		d        Drafter
		draftMax int
		all      bool // every drafted token is accepted
	}{
		{"the target itself", self, 0, true},
		{"the target itself, 3 at a time", self, 3, true},
		{"other weights", other, 5, false},
		{"prompt lookup", &NgramDrafter{}, 0, false},
		{"noise", noise, 4, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, res, last := generateTokens(t, c, prompt, greedy, GenerateParams{MaxTokens: n, IgnoreEOG: true, Draft: tc.d, DraftMax: tc.draftMax})
			assert.Equal(t, want, got)
			assert.Equal(t, wantLast, last, "the cache holds what plain decoding leaves")
			assert.Equal(t, n, res.GeneratedTokens)
			assert.LessOrEqual(t, res.DraftAccepted, res.Drafted)
			t.Logf("drafted %d, accepted %d", res.Drafted, res.DraftAccepted)
			if tc.all {
				assert.Equal(t, res.Drafted, res.DraftAccepted)
				assert.Greater(t, res.DraftAccepted, n/2, "most tokens came from drafts")
			} else {
				assert.Positive(t, res.Drafted)
			}
		})
	}

	t.Run("stop string and logprobs", func(t *testing.T) {
		var lpWant GenerateResult
		text := func(d Drafter, res *GenerateResult) string {
			_, err := c.MemorySeqRemove(0, -1, -1)
			require.NoError(t, err)
			out := ""
			for s, err := range c.GenerateText(t.Context(), "one two three four, one two", greedy,
				&GenerateParams{MaxTokens: 40, IgnoreEOG: true, Draft: d, Logprobs: 2, Stop: []string{"three four, one"}}) {
				require.NoError(t, err)
				out += s
			}
			*res = c.LastGeneration()
			return out
		}
		var res GenerateResult
		assert.Equal(t, text(nil, &lpWant), text(self, &res))
		require.Equal(t, len(lpWant.Logprobs), len(res.Logprobs))
		for i := range res.Logprobs {
			assert.Equal(t, lpWant.Logprobs[i].Token, res.Logprobs[i].Token)
			assert.InDelta(t, lpWant.Logprobs[i].Logprob, res.Logprobs[i].Logprob, 1e-3, "token %d: the row of a drafted token has the same distribution", i)
		}
	})
}

// With sampling, speculation keeps the target's distribution: seed for seed the same
// tokens, and 600 two-token samples drawn with a mostly-right drafter fit the exact
// joint distribution computed from the target's logits (chi-square goodness of fit).
func TestSpeculativeSamplingDistribution(t *testing.T) {
	m := loadTiny(t)
	c, err := m.NewContext(&ContextParams{NCtx: 256})
	require.NoError(t, err)
	defer c.Close()
	prompt, err := m.Tokenize("The quick brown fox", AddSpecial)
	require.NoError(t, err)
	const temp = 3 // flat enough that each of the top 3 is drawn often
	self, err := NewModelDrafter(m, m, &ModelDrafterParams{MinProb: -1})
	require.NoError(t, err)
	defer self.Close()

	sampler := func(seed uint32) *Sampler {
		s, err := NewSampler(m, TopK(3), Temp(temp), Seed(seed), Dist())
		require.NoError(t, err)
		t.Cleanup(func() { s.Close() })
		return s
	}
	// The exact distribution: top 3 of the logits, softened by temp.
	top3 := func(history []Token) map[Token]float64 {
		_, err := c.MemorySeqRemove(0, -1, -1)
		require.NoError(t, err)
		require.NoError(t, c.DecodeTokens(t.Context(), history, 0, 0))
		logits, err := c.Logits(-1)
		require.NoError(t, err)
		best := map[Token]float64{}
		for range 3 {
			var arg Token = -1
			for i, l := range logits {
				if _, taken := best[Token(i)]; !taken && (arg < 0 || l > logits[arg]) {
					arg = Token(i)
				}
			}
			best[arg] = float64(logits[arg])
		}
		var sum float64
		hi := math.Inf(-1)
		for _, l := range best {
			hi = max(hi, l)
		}
		for tok, l := range best {
			best[tok] = math.Exp((l - hi) / temp)
			sum += best[tok]
		}
		for tok := range best {
			best[tok] /= sum
		}
		return best
	}
	want := map[[2]Token]float64{}
	for x1, p1 := range top3(prompt) {
		for x2, p2 := range top3(append(append([]Token(nil), prompt...), x1)) {
			want[[2]Token{x1, x2}] = p1 * p2
		}
	}

	const draws = 600
	counts := map[[2]Token]int{}
	drafted, accepted := 0, 0
	for seed := range uint32(draws) {
		// The second token is sampled from the row that checks the draft made after the
		// first; the third token lets that draft exist (none is made for the last token).
		spec, res, _ := generateTokens(t, c, prompt, sampler(seed+1), GenerateParams{MaxTokens: 3, IgnoreEOG: true, Draft: self})
		if seed < 50 && Backend == "cpu" { // a GPU's kernels differ by row count: see the engine's test
			plain, _, _ := generateTokens(t, c, prompt, sampler(seed+1), GenerateParams{MaxTokens: 3, IgnoreEOG: true})
			require.Equal(t, plain, spec, "seed %d: the same tokens as without a draft", seed+1)
		}
		require.Len(t, spec, 3)
		counts[[2]Token{spec[0], spec[1]}]++
		drafted += res.Drafted
		accepted += res.DraftAccepted
	}
	chi2 := 0.0
	for cell, p := range want {
		e := p * draws
		d := float64(counts[cell]) - e
		chi2 += d * d / e
	}
	for cell, n := range counts {
		_, ok := want[cell]
		assert.True(t, ok, "drew %v (%d times): outside the top 3", cell, n)
	}
	t.Logf("chi-square %.2f over %d cells (8 degrees of freedom; 26.1 is p = 0.001); %d drafted, %d accepted", chi2, len(want), drafted, accepted)
	assert.Less(t, chi2, 26.1, fmt.Sprint(counts))
	assert.Positive(t, accepted, "the draft was taken at times")
	assert.Less(t, accepted, drafted, "and refused at others")
}

// Drafters that cannot be used are refused before anything is decoded.
func TestSpeculativeRefusals(t *testing.T) {
	m := loadTiny(t)
	qwen, err := LoadModel(t.Context(), synthModel(t, "qwen2-tiny", gguf.TypeQ8_0), &ModelParams{GPULayers: 0})
	require.NoError(t, err)
	defer qwen.Close()
	_, err = NewModelDrafter(m, qwen, nil)
	assert.ErrorIs(t, err, ErrInvalidParams)
	assert.ErrorContains(t, err, "vocabulary differs")
	_, err = NewModelDrafter(m, nil, nil)
	assert.ErrorIs(t, err, ErrInvalidParams)
	_, err = NewModelDrafter(m, m, &ModelDrafterParams{MinProb: 2})
	assert.ErrorIs(t, err, ErrInvalidParams)

	c, err := m.NewContext(&ContextParams{NCtx: 256})
	require.NoError(t, err)
	defer c.Close()
	s, err := NewSampler(m, Greedy())
	require.NoError(t, err)
	defer s.Close()
	prompt, err := m.Tokenize("hello", AddSpecial)
	require.NoError(t, err)
	run := func(o GenerateParams) error {
		_, err := c.MemorySeqRemove(0, -1, -1)
		require.NoError(t, err)
		for _, err := range c.Generate(t.Context(), prompt, s, &o) {
			if err != nil {
				return err
			}
		}
		return nil
	}
	outOfRange := drafterFunc(func([]Token, int) []Token { return []Token{Token(m.Vocab().NTokens)} })
	assert.ErrorIs(t, run(GenerateParams{MaxTokens: 4, Draft: outOfRange}), ErrInvalidToken)
	tooMany := drafterFunc(func(_ []Token, limit int) []Token { return make([]Token, limit+1) })
	assert.ErrorIs(t, run(GenerateParams{MaxTokens: 4, Draft: tooMany}), ErrInvalidParams)
	assert.ErrorIs(t, run(GenerateParams{MaxTokens: 4, Draft: &NgramDrafter{MinMatch: 5, MaxMatch: 2}}), ErrInvalidParams)
	assert.ErrorIs(t, run(GenerateParams{MaxTokens: 4, Draft: &NgramDrafter{}, DraftMax: -1}), ErrInvalidParams)
	// After all that, the context generates as before.
	require.NoError(t, run(GenerateParams{MaxTokens: 4, Draft: &NgramDrafter{}}))
}

// A ChatSession with a drafter replies as one without, and its drafter sees the whole
// conversation, not only the part of the prompt decoded this turn.
func TestSpeculativeChatSession(t *testing.T) {
	m := loadQwenTiny(t)
	self, err := NewModelDrafter(m, m, &ModelDrafterParams{Context: &ContextParams{NCtx: 1024}})
	require.NoError(t, err)
	defer self.Close()
	var firstHistory []int // per turn: the history length of its first draft
	seen := drafterFunc(func(h []Token, limit int) []Token {
		firstHistory = append(firstHistory, len(h))
		d, err := self.Draft(t.Context(), h, limit)
		require.NoError(t, err)
		return d
	})
	_, plain := newTestSession(t, m, 1024, &ChatSessionParams{System: "Be brief.", Sampling: greedyParams(), MaxTokens: 24})
	_, spec := newTestSession(t, m, 1024, &ChatSessionParams{System: "Be brief.", Sampling: greedyParams(), MaxTokens: 24, Draft: seen, DraftMax: 6})
	for _, say := range []string{"Hello there", "Tell me more", "And then?"} {
		want, err := drain(t, plain.Say(t.Context(), say))
		require.NoError(t, err)
		firstHistory = firstHistory[:0]
		got, err := drain(t, spec.Say(t.Context(), say))
		require.NoError(t, err)
		assert.Equal(t, want, got)
		turn := spec.LastTurn()
		assert.Equal(t, plain.LastTurn().GeneratedTokens, turn.GeneratedTokens)
		assert.Equal(t, turn.Drafted, turn.DraftAccepted, "the model drafting for itself is always right")
		assert.Positive(t, turn.DraftAccepted)
		require.NotEmpty(t, firstHistory)
		assert.Equal(t, turn.PromptTokens+1, firstHistory[0], "the first draft of a turn sees the whole conversation and the first reply token")
	}
}

// A ModelDrafter whose vocabulary is not the target's size costs speed, never the
// generation: history tokens it lacks give no draft, and a draft ends before a token
// the target lacks.
func TestModelDrafterVocabEdges(t *testing.T) {
	m := loadTiny(t)
	d, err := NewModelDrafter(m, m, &ModelDrafterParams{Context: &ContextParams{NCtx: 256}, MinProb: -1})
	require.NoError(t, err)
	defer d.Close()
	prompt, err := m.Tokenize("one two three four", AddSpecial)
	require.NoError(t, err)

	full, err := d.Draft(t.Context(), prompt, 4)
	require.NoError(t, err)
	require.Len(t, full, 4)

	unknown := append(append([]Token(nil), prompt...), Token(m.Vocab().NTokens))
	got, err := d.Draft(t.Context(), unknown, 4)
	require.NoError(t, err)
	assert.Empty(t, got, "a token the draft model lacks: no draft")

	// As if the target's vocabulary ended below the largest drafted token.
	d.targetTokens = int(slices.Max(full))
	want := append([]Token{}, full[:slices.Index(full, slices.Max(full))]...)
	got, err = d.Draft(t.Context(), prompt, 4)
	require.NoError(t, err)
	assert.Equal(t, want, append([]Token{}, got...), "the draft ends before a token the target lacks")
	assert.Less(t, len(got), len(full))
}
