package llama

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/llamago/llamago/llama/gguf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const statePrompt = "The quick brown fox jumps over the lazy dog, and then it ran far away into the forest."

// prefill decodes all but the last prompt token into seq of a new context and returns the
// context and the prompt.
func prefill(t *testing.T, m *Model, p *ContextParams, seq SeqID) (*Context, []Token) {
	t.Helper()
	c, err := m.NewContext(p)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	tokens, err := m.Tokenize(statePrompt, AddSpecial)
	require.NoError(t, err)
	require.NoError(t, c.DecodeTokens(t.Context(), tokens[:len(tokens)-1], 0, seq))
	return c, tokens
}

// lastLogits decodes the prompt's last token into seq and returns its logits: the same
// values in a context whose memory was restored as in the one that decoded the prefix.
func lastLogits(t *testing.T, c *Context, tokens []Token, seq SeqID) []float32 {
	t.Helper()
	require.NoError(t, c.DecodeTokens(t.Context(), tokens[len(tokens)-1:], Pos(len(tokens)-1), seq))
	l, err := c.Logits(-1)
	require.NoError(t, err)
	return l
}

var stateParams = &ContextParams{NCtx: 256, NSeqMax: 2, Threads: 2}

func TestStateRoundTrip(t *testing.T) {
	m := loadTiny(t)
	src, tokens := prefill(t, m, stateParams, 0)
	data, err := src.State()
	require.NoError(t, err)
	want := lastLogits(t, src, tokens, 0)

	dst, err := m.NewContext(stateParams)
	require.NoError(t, err)
	defer dst.Close()
	require.NoError(t, dst.SetState(data))
	_, err = dst.Logits(-1)
	assert.ErrorIs(t, err, ErrNoLogits, "a restored state has no logits")
	lo, hi, err := dst.MemorySeqPosRange(0)
	require.NoError(t, err)
	assert.Equal(t, [2]Pos{0, Pos(len(tokens) - 2)}, [2]Pos{lo, hi})
	assert.Equal(t, want, lastLogits(t, dst, tokens, 0))
}

func TestSeqStateRoundTrip(t *testing.T) {
	m := loadTiny(t)
	c, tokens := prefill(t, m, stateParams, 0)
	data, err := c.SeqState(0)
	require.NoError(t, err)
	require.NoError(t, c.SetSeqState(1, data), "restored into another sequence")
	lo, hi, err := c.MemorySeqPosRange(1)
	require.NoError(t, err)
	assert.Equal(t, [2]Pos{0, Pos(len(tokens) - 2)}, [2]Pos{lo, hi})
	assert.Equal(t, lastLogits(t, c, tokens, 0), lastLogits(t, c, tokens, 1))
}

func TestStateFiles(t *testing.T) {
	m := loadTiny(t)
	dir := t.TempDir()
	src, tokens := prefill(t, m, stateParams, 0)
	whole, seqFile := filepath.Join(dir, "state.bin"), filepath.Join(dir, "seq.bin")
	require.NoError(t, src.SaveStateFile(whole, tokens[:len(tokens)-1]))
	require.NoError(t, src.SaveSeqStateFile(seqFile, 0, tokens[:len(tokens)-1]))
	want := lastLogits(t, src, tokens, 0)

	dst, err := m.NewContext(stateParams)
	require.NoError(t, err)
	defer dst.Close()
	got, err := dst.LoadStateFile(whole)
	require.NoError(t, err)
	assert.Equal(t, tokens[:len(tokens)-1], got)
	assert.Equal(t, want, lastLogits(t, dst, tokens, 0))

	got, err = dst.LoadSeqStateFile(seqFile, 1)
	require.NoError(t, err)
	assert.Equal(t, tokens[:len(tokens)-1], got)
	assert.Equal(t, want, lastLogits(t, dst, tokens, 1))

	// No tokens is a valid file too.
	require.NoError(t, src.SaveSeqStateFile(seqFile, 1, nil))
	got, err = dst.LoadSeqStateFile(seqFile, 1)
	require.NoError(t, err)
	assert.Empty(t, got)
}

// Every way a restore can be wrong returns ErrInvalidState (or ErrInvalidParams for bad
// arguments) and leaves the context working.
func TestStateRestoreRefusesBadInput(t *testing.T) {
	m := loadTiny(t)
	src, tokens := prefill(t, m, stateParams, 0)
	whole, err := src.State()
	require.NoError(t, err)
	seq, err := src.SeqState(0)
	require.NoError(t, err)
	dir := t.TempDir()
	good := filepath.Join(dir, "seq.bin")
	require.NoError(t, src.SaveSeqStateFile(good, 0, tokens[:len(tokens)-1]))
	goodData, err := os.ReadFile(good)
	require.NoError(t, err)

	other, err := LoadModel(t.Context(), synthModel(t, "qwen2-tiny", gguf.TypeF16), &ModelParams{GPULayers: 0})
	require.NoError(t, err)
	defer other.Close()
	otherCtx, _ := prefill(t, other, stateParams, 0)
	otherWhole, err := otherCtx.State()
	require.NoError(t, err)
	otherSeq, err := otherCtx.SeqState(0)
	require.NoError(t, err)
	f32, _ := prefill(t, m, &ContextParams{NCtx: 256, NSeqMax: 2, Threads: 2, TypeK: CacheF32, TypeV: CacheF32}, 0)
	// More cells than the small context below has.
	big, err := m.NewContext(&ContextParams{NCtx: 1024, NSeqMax: 2, Threads: 2})
	require.NoError(t, err)
	defer big.Close()
	var long []Token
	for len(long) < 400 {
		long = append(long, tokens...)
	}
	require.NoError(t, big.DecodeTokens(t.Context(), long, 0, 0))
	bigWhole, err := big.State()
	require.NoError(t, err)
	bigSeq, err := big.SeqState(0)
	require.NoError(t, err)
	f32Whole, err := f32.State()
	require.NoError(t, err)
	f32Seq, err := f32.SeqState(0)
	require.NoError(t, err)

	garbage := make([]byte, 4096)
	for i := range garbage {
		garbage[i] = byte(i*7 + 3)
	}
	writeFile := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, data, 0o644))
		return p
	}

	dst, err := m.NewContext(stateParams)
	require.NoError(t, err)
	defer dst.Close()
	small, err := m.NewContext(&ContextParams{NCtx: 256, NSeqMax: 2, Threads: 2})
	require.NoError(t, err)
	defer small.Close()
	require.Less(t, small.NCtx()/small.NSeqMax(), len(long), "cells per sequence")

	for name, restore := range map[string]func() error{
		"whole: empty":       func() error { return dst.SetState(nil) },
		"whole: garbage":     func() error { return dst.SetState(garbage) },
		"whole: truncated":   func() error { return dst.SetState(whole[:len(whole)/2]) },
		"whole: header only": func() error { return dst.SetState(whole[:16]) },
		"whole: damaged past the header": func() error {
			return dst.SetState(append(whole[:16:16], garbage...))
		},
		"whole: trailing bytes":      func() error { return dst.SetState(append(whole[:len(whole):len(whole)], 1, 2, 3)) },
		"whole: a sequence's state":  func() error { return dst.SetState(seq) },
		"whole: another model":       func() error { return dst.SetState(otherWhole) },
		"whole: another cache type":  func() error { return dst.SetState(f32Whole) },
		"whole: too small a context": func() error { return small.SetState(bigWhole) },
		"seq: empty":                 func() error { return dst.SetSeqState(0, nil) },
		"seq: garbage":               func() error { return dst.SetSeqState(0, garbage) },
		"seq: truncated":             func() error { return dst.SetSeqState(0, seq[:len(seq)-9]) },
		"seq: damaged past the header": func() error {
			return dst.SetSeqState(0, append(seq[:16:16], garbage...))
		},
		"seq: the whole state":     func() error { return dst.SetSeqState(0, whole) },
		"seq: another model":       func() error { return dst.SetSeqState(0, otherSeq) },
		"seq: another cache type":  func() error { return dst.SetSeqState(0, f32Seq) },
		"seq: too small a context": func() error { return small.SetSeqState(0, bigSeq) },
		"seq file: missing": func() error {
			_, err := dst.LoadSeqStateFile(filepath.Join(dir, "missing"), 0)
			return err
		},
		"seq file: a directory": func() error { _, err := dst.LoadSeqStateFile(dir, 0); return err },
		"seq file: garbage": func() error {
			_, err := dst.LoadSeqStateFile(writeFile("garbage", garbage), 0)
			return err
		},
		"seq file: truncated": func() error {
			_, err := dst.LoadSeqStateFile(writeFile("truncated", goodData[:len(goodData)/2]), 0)
			return err
		},
		"seq file: token count past the end": func() error {
			_, err := dst.LoadSeqStateFile(writeFile("count", goodData[:16]), 0)
			return err
		},
		"whole file: garbage": func() error {
			_, err := dst.LoadStateFile(writeFile("garbage2", garbage))
			return err
		},
		"whole file: a sequence file": func() error { _, err := dst.LoadStateFile(good); return err },
	} {
		err := restore()
		assert.ErrorIs(t, err, ErrInvalidState, name)
		// Still usable: the restore left the memory empty or as it was, and decoding works.
		for _, c := range []*Context{dst, small} {
			require.NoError(t, c.MemoryClear(false), name)
			require.NoError(t, c.DecodeTokens(t.Context(), tokens[:4], 0, 0), name)
		}
	}

	for name, err := range map[string]error{
		"seq out of range":     dst.SetSeqState(2, seq),
		"negative seq":         func() error { _, err := dst.SeqState(-1); return err }(),
		"path with a NUL byte": dst.SaveStateFile("a\x00b", nil),
		"empty path":           dst.SaveSeqStateFile("", 0, nil),
		"invalid token":        dst.SaveStateFile(filepath.Join(dir, "x"), []Token{-1}),
	} {
		assert.Error(t, err, name)
		assert.NotErrorIs(t, err, ErrInvalidState, name)
	}
	assert.ErrorIs(t, dst.SaveStateFile(filepath.Join(dir, "x"), []Token{Token(m.Vocab().NTokens)}), ErrInvalidToken)
	assert.Error(t, dst.SaveStateFile(filepath.Join(dir, "no", "such", "dir"), nil), "unwritable path")
	require.NoError(t, dst.Close())
	_, err = dst.State()
	assert.ErrorIs(t, err, ErrClosed)
	assert.ErrorIs(t, dst.SetSeqState(0, seq), ErrClosed)
}
