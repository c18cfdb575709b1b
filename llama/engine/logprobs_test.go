package engine_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/llamago/llamago/llama"
	"github.com/llamago/llamago/llama/engine"
)

// A request with Logprobs gets each token's log-probability and its alternatives, as
// llama.Generate records them for the same prompt alone; device sampling does not take
// such a request.
func TestLogprobs(t *testing.T) {
	m := loadModel(t)
	ps := prompts(t, m, 2)
	c, err := m.NewContext(&llama.ContextParams{NCtx: 512})
	require.NoError(t, err)
	defer c.Close()
	s, err := llama.NewSamplerFromParams(m, greedy())
	require.NoError(t, err)
	defer s.Close()
	var want llama.GenerateResult
	for _, err := range c.Generate(t.Context(), ps[0], s, &llama.GenerateParams{MaxTokens: 6, IgnoreEOG: true, Logprobs: 3}) {
		require.NoError(t, err)
	}
	want = c.LastGeneration()

	e := newEngine(t, m, &engine.Params{Slots: 2, DeviceSampling: true})
	var res engine.Result
	var toks []llama.Token
	var got []llama.Generated
	for d, err := range e.Generate(t.Context(), &engine.Request{Prompt: ps[0], Sampling: greedy(), MaxTokens: 6, IgnoreEOG: true, Logprobs: true, TopLogprobs: 3, Result: &res}) {
		require.NoError(t, err)
		require.Len(t, d.Logprobs, len(d.Tokens), "one per token")
		toks = append(toks, d.Tokens...)
		got = append(got, d.Logprobs...)
	}
	assert.False(t, res.DeviceSampling)
	require.Len(t, got, len(want.Logprobs))
	for i, g := range got {
		w := want.Logprobs[i]
		assert.Equal(t, toks[i], g.Token)
		assert.Equal(t, w.Token, g.Token)
		assert.InDelta(t, w.Logprob, g.Logprob, 1e-3, "token %d", i)
		require.Len(t, g.Top, 3)
		assert.Equal(t, g.Token, g.Top[0].Token, "greedy picks the most likely")
		for k := range g.Top {
			assert.Equal(t, w.Top[k].Token, g.Top[k].Token)
			assert.LessOrEqual(t, g.Top[k].Logprob, float32(0))
		}
	}

	// Without Logprobs, none; bad counts are refused.
	for d, err := range e.Generate(t.Context(), &engine.Request{Prompt: ps[1], Sampling: greedy(), MaxTokens: 2}) {
		require.NoError(t, err)
		assert.Empty(t, d.Logprobs)
	}
	for _, bad := range []*engine.Request{{Prompt: ps[1], TopLogprobs: 2}, {Prompt: ps[1], Logprobs: true, TopLogprobs: 21}} {
		_, _, err := collect(t.Context(), e, bad)
		assert.ErrorIs(t, err, llama.ErrInvalidParams)
	}
}
