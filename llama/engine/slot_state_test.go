package engine_test

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"testing"

	"github.com/llamago/llamago/internal/testmodel"
	"github.com/llamago/llamago/llama"
	"github.com/llamago/llamago/llama/engine"
	"github.com/llamago/llamago/llama/gguf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A slot's cache saved to a file and restored into another engine serves the same prompt
// from the cache, with the same output.
func TestSaveRestoreSlot(t *testing.T) {
	m := loadModel(t)
	ps := prompts(t, m, 1)
	dir := t.TempDir()

	src := newEngine(t, m, &engine.Params{Slots: 2})
	_, _, err := collect(t.Context(), src, &engine.Request{Prompt: ps[0], Sampling: greedy(), MaxTokens: 4})
	require.NoError(t, err)
	var path string
	saved := 0
	for id := range src.Slots() { // the request ran in one of them
		p := filepath.Join(dir, fmt.Sprintf("slot%d.bin", id))
		n, err := src.SaveSlot(t.Context(), id, p)
		require.NoError(t, err)
		if n > saved {
			saved, path = n, p
		}
	}
	assert.GreaterOrEqual(t, saved, len(ps[0]), "the prompt and generated tokens are in the slot")

	dst := newEngine(t, m, &engine.Params{Slots: 2})
	n, err := dst.RestoreSlot(t.Context(), 1, path)
	require.NoError(t, err)
	assert.Equal(t, saved, n)
	var res engine.Result
	toks, _, err := collect(t.Context(), dst, &engine.Request{Prompt: ps[0], Sampling: greedy(), MaxTokens: 8, IgnoreEOG: true, Result: &res})
	require.NoError(t, err)
	assert.Equal(t, len(ps[0])-1, res.CachedTokens, "the restored cache served the prompt")
	assert.Equal(t, alone(t, m, ps[0], 8), toks)

	n, err = dst.EraseSlot(t.Context(), 1)
	require.NoError(t, err)
	assert.Positive(t, n)
	n, err = dst.EraseSlot(t.Context(), 1)
	require.NoError(t, err)
	assert.Zero(t, n, "erased")

	_, err = dst.RestoreSlot(t.Context(), 0, filepath.Join(t.TempDir(), "missing.bin"))
	assert.ErrorIs(t, err, llama.ErrInvalidState)
	_, err = dst.SaveSlot(t.Context(), 2, path)
	assert.ErrorIs(t, err, llama.ErrInvalidParams)
	_, err = dst.EraseSlot(t.Context(), -1)
	assert.ErrorIs(t, err, llama.ErrInvalidParams)
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	_, err = dst.EraseSlot(cancelled, 0)
	if err != nil { // a cancelled wait: the erase was done, or not started
		assert.ErrorIs(t, err, context.Canceled)
	}
	require.NoError(t, dst.Close())
	_, err = dst.SaveSlot(t.Context(), 0, path)
	assert.ErrorIs(t, err, engine.ErrClosed)
}

// A slot serving a request is not saved, restored or erased under it.
func TestSlotBusy(t *testing.T) {
	m := loadModel(t)
	e := newEngine(t, m, &engine.Params{Slots: 1, Context: &llama.ContextParams{NCtx: 512}})
	ps := prompts(t, m, 1)
	checked := false
	for _, err := range e.Generate(t.Context(), &engine.Request{Prompt: ps[0], Sampling: greedy(), MaxTokens: 400, IgnoreEOG: true}) {
		require.NoError(t, err)
		if !checked {
			_, err := e.SaveSlot(t.Context(), 0, filepath.Join(t.TempDir(), "x"))
			assert.ErrorIs(t, err, engine.ErrSlotBusy)
			_, err = e.EraseSlot(t.Context(), 0)
			assert.ErrorIs(t, err, engine.ErrSlotBusy)
			checked = true
		}
	}
	assert.True(t, checked)
}

// SlotStatuses agrees with llama.cpp's own count of each sequence's cells: while a
// request runs, after it, and after an erase.
func TestSlotStatuses(t *testing.T) {
	m := loadModel(t)
	e := newEngine(t, m, &engine.Params{Slots: 3, Context: &llama.ContextParams{NCtx: 1024}})
	ps := prompts(t, m, 2)
	sawActive := false
	for _, err := range e.Generate(t.Context(), &engine.Request{Prompt: ps[0], Sampling: greedy(), MaxTokens: 6, IgnoreEOG: true}) {
		require.NoError(t, err)
		if !sawActive {
			st, err := e.SlotStatuses(t.Context())
			require.NoError(t, err)
			require.Len(t, st, 3)
			active := 0
			for _, s := range st {
				if s.Active {
					active++
				}
			}
			assert.Equal(t, 1, active)
			sawActive = true
		}
	}
	require.True(t, sawActive)
	st, err := e.SlotStatuses(t.Context())
	require.NoError(t, err)
	used := 0
	for i, s := range st {
		assert.Equal(t, i, s.ID)
		assert.False(t, s.Active)
		assert.Equal(t, s.KVTokens, s.CachedTokens, "slot %d: the engine's count is llama.cpp's", i)
		used += s.KVTokens
	}
	assert.GreaterOrEqual(t, used, len(ps[0])+4, "the prompt and most generated tokens stay cached")
	for i := range st {
		_, err := e.EraseSlot(t.Context(), i)
		require.NoError(t, err)
	}
	st, err = e.SlotStatuses(t.Context())
	require.NoError(t, err)
	for _, s := range st {
		assert.Zero(t, s.KVTokens)
		assert.Zero(t, s.CachedTokens)
	}
	assert.Zero(t, e.Metrics().CacheCells)
}

// Adapters set between requests change the next requests' output; the prefixes cached
// before are not reused under them.
func TestSetLoRA(t *testing.T) {
	m := loadModel(t)
	adapter, err := m.LoadLoRA(testmodel.LoRA(t, testmodel.Path(t, "llama-tiny", gguf.TypeQ8_0)))
	require.NoError(t, err)
	defer adapter.Close()
	e := newEngine(t, m, &engine.Params{Slots: 1})
	ps := prompts(t, m, 1)
	// Seeded sampling shows a change of the logits that greedy on this tiny model would not.
	sampling := llama.DefaultSamplingParams()
	sampling.Seed, sampling.Temperature, sampling.TopK = 42, 1.5, 0
	req := func(res *engine.Result) []llama.Token {
		toks, _, err := collect(t.Context(), e, &engine.Request{Prompt: ps[0], Sampling: &sampling, MaxTokens: 16, IgnoreEOG: true, Result: res})
		require.NoError(t, err)
		return toks
	}
	var r1, r2, r3 engine.Result
	plain := req(&r1)
	require.NoError(t, e.SetLoRA(t.Context(), llama.LoRAScale{Adapter: adapter, Scale: 8}))
	assert.Equal(t, []llama.LoRAScale{{Adapter: adapter, Scale: 8}}, e.LoRA())
	assert.NotEqual(t, plain, req(&r2))
	assert.Zero(t, r2.CachedTokens, "the prefix cached without the adapter is not reused")
	require.NoError(t, e.SetLoRA(t.Context()))
	assert.Equal(t, plain, req(&r3))
	assert.ErrorIs(t, e.SetLoRA(t.Context(), llama.LoRAScale{Adapter: adapter, Scale: float32(math.Inf(1))}), llama.ErrInvalidParams)
}
