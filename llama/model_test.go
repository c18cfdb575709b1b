package llama

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/llamago/llamago/internal/synth"
	"github.com/llamago/llamago/llama/gguf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSyntheticShapesLoad(t *testing.T) {
	for _, shape := range []string{"llama-tiny", "mistral-tiny", "qwen2-tiny"} {
		t.Run(shape, func(t *testing.T) {
			for _, typ := range []gguf.TensorType{gguf.TypeF32, gguf.TypeF16, gguf.TypeQ8_0} {
				m, err := LoadModel(t.Context(), synthModel(t, shape, typ), &ModelParams{GPULayers: 0})
				require.NoError(t, err, "type %v", typ)
				info := m.Info()
				s, err := synth.ShapeByName(shape)
				require.NoError(t, err)
				assert.Equal(t, s.Arch, info.Architecture)
				assert.Equal(t, s.Embd, info.NEmbd)
				assert.Equal(t, s.Layers, info.NLayer)
				assert.Equal(t, s.Heads, info.NHead)
				assert.Equal(t, s.HeadsKV, info.NHeadKV)
				assert.Greater(t, info.Params, uint64(0))
				assert.Equal(t, s.Arch, info.Metadata["general.architecture"])

				c, err := m.NewContext(&ContextParams{NCtx: 128})
				require.NoError(t, err)
				toks, err := m.Tokenize("The quick brown fox", AddSpecial)
				require.NoError(t, err)
				require.NoError(t, c.DecodeTokens(t.Context(), toks, 0, 0))
				logits, err := c.Logits(-1)
				require.NoError(t, err)
				assert.Len(t, logits, m.Vocab().NTokens)
				require.NoError(t, c.Close())
				require.NoError(t, m.Close())
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	notGGUF := filepath.Join(dir, "notes.gguf")
	require.NoError(t, os.WriteFile(notGGUF, []byte("this is not a model file at all"), 0o644))
	empty := filepath.Join(dir, "empty.gguf")
	require.NoError(t, os.WriteFile(empty, nil, 0o644))
	whole, err := os.ReadFile(synthModel(t, "llama-tiny", gguf.TypeF16))
	require.NoError(t, err)
	truncated := filepath.Join(dir, "truncated.gguf")
	require.NoError(t, os.WriteFile(truncated, whole[:len(whole)/2], 0o644))
	headerOnly := filepath.Join(dir, "header.gguf")
	require.NoError(t, os.WriteFile(headerOnly, whole[:64], 0o644))

	for name, path := range map[string]string{
		"missing":   filepath.Join(dir, "nope.gguf"),
		"directory": dir,
		"not gguf":  notGGUF,
		"empty":     empty,
		"truncated": truncated,
		"header":    headerOnly,
		"no path":   "",
	} {
		_, err := LoadModel(t.Context(), path, nil)
		var le *LoadError
		if assert.ErrorAs(t, err, &le, name) {
			assert.Equal(t, path, le.Path)
			t.Logf("%s: %v", name, err)
		}
	}
	_, err = LoadModel(t.Context(), filepath.Join(dir, "nope.gguf"), nil)
	assert.ErrorIs(t, err, os.ErrNotExist)

	// Bad parameters.
	tiny := synthModel(t, "llama-tiny", gguf.TypeF16)
	for name, p := range map[string]*ModelParams{
		"split mode":   {SplitMode: 99},
		"main gpu":     {MainGPU: -1},
		"tensor split": {TensorSplit: []float32{1, -1}},
		"too many":     {TensorSplit: make([]float32, MaxDevices()+1)},
		"device":       {Devices: []Device{{Index: 99, Name: "nope"}}},
	} {
		_, err := LoadModel(t.Context(), tiny, p)
		assert.ErrorIs(t, err, ErrInvalidParams, name)
	}

	// The process is alive and the next load works.
	m, err := LoadModel(t.Context(), tiny, nil)
	require.NoError(t, err)
	require.NoError(t, m.Close())
}

func TestLoadCancel(t *testing.T) {
	path := synthModel(t, "llama-tiny", gguf.TypeF16)

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := LoadModel(ctx, path, nil)
	assert.ErrorIs(t, err, ErrAborted)
	assert.ErrorIs(t, err, context.Canceled)

	// Cancelled from the progress callback, i.e. while loading.
	ctx2, cancel2 := context.WithCancelCause(t.Context())
	stop := errors.New("enough")
	calls := 0
	_, err = LoadModel(ctx2, path, &ModelParams{NoMmap: true, Progress: func(float32) {
		calls++
		cancel2(stop)
	}})
	assert.ErrorIs(t, err, ErrAborted)
	assert.ErrorIs(t, err, stop)
	assert.Equal(t, 1, calls)

	// A panicking callback stops the load with an error; the process lives.
	_, err = LoadModel(t.Context(), path, &ModelParams{Progress: func(float32) { panic("boom") }})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "boom")

	var fractions []float32
	m, err := LoadModel(t.Context(), path, &ModelParams{Progress: func(f float32) { fractions = append(fractions, f) }})
	require.NoError(t, err)
	defer m.Close()
	require.NotEmpty(t, fractions)
	assert.InDelta(t, 1.0, fractions[len(fractions)-1], 1e-6)
}

func TestQuantize(t *testing.T) {
	in := synthModel(t, "qwen2-tiny", gguf.TypeF16)
	dir := t.TempDir()
	ref, err := LoadModel(t.Context(), in, &ModelParams{GPULayers: 0})
	require.NoError(t, err)
	defer ref.Close()
	prompt, err := ref.Tokenize("Quantized models keep their vocabulary", AddSpecial)
	require.NoError(t, err)
	for _, typ := range []string{"Q8_0", "Q4_K_M"} {
		out := filepath.Join(dir, typ+".gguf")
		var calls, last, total int
		progress := func(done, n int, tensor string) {
			calls++
			assert.Greater(t, done, last, "tensor %s", tensor)
			last, total = done, n
		}
		require.NoError(t, Quantize(t.Context(), in, out, &QuantizeParams{Type: typ, Threads: 2, Progress: progress}))
		assert.Positive(t, total)
		assert.Equal(t, total, last, "progress reaches every tensor")
		assert.Equal(t, total, calls)
		m, err := LoadModel(t.Context(), out, &ModelParams{GPULayers: 0})
		require.NoError(t, err)
		assert.Contains(t, m.Info().FileType, typ[:2])
		assert.Less(t, m.Info().Size, ref.Info().Size)
		toks, err := m.Tokenize("Quantized models keep their vocabulary", AddSpecial)
		require.NoError(t, err)
		assert.Equal(t, prompt, toks)
		c, err := m.NewContext(&ContextParams{NCtx: 256})
		require.NoError(t, err)
		require.NoError(t, c.DecodeTokens(t.Context(), toks, 0, 0))
		c.Close()
		m.Close()
	}
	assert.ErrorIs(t, Quantize(t.Context(), in, filepath.Join(dir, "x.gguf"), &QuantizeParams{Type: "Q9_9"}), ErrInvalidParams)
	assert.ErrorIs(t, Quantize(t.Context(), in, in, nil), ErrInvalidParams)
	var le *LoadError
	assert.ErrorAs(t, Quantize(t.Context(), filepath.Join(dir, "missing.gguf"), filepath.Join(dir, "y.gguf"), nil), &le)
}

// rewriteModel copies a model file with its metadata changed by edit.
func rewriteModel(t *testing.T, src string, edit func(key string, v gguf.Value) gguf.Value) string {
	t.Helper()
	in, err := gguf.Open(src)
	require.NoError(t, err)
	defer in.Close()
	meta := make([]gguf.KV, len(in.Metadata))
	for i, kv := range in.Metadata {
		meta[i] = gguf.KV{Key: kv.Key, Value: edit(kv.Key, kv.Value)}
	}
	out := filepath.Join(t.TempDir(), "edited.gguf")
	f, err := os.Create(out)
	require.NoError(t, err)
	defer f.Close()
	w, err := gguf.NewWriter(f, meta, in.Tensors)
	require.NoError(t, err)
	for _, ti := range in.Tensors {
		r, err := in.TensorData(ti.Name)
		require.NoError(t, err)
		data, err := io.ReadAll(r)
		require.NoError(t, err)
		require.NoError(t, w.WriteTensor(ti.Name, data))
	}
	require.NoError(t, w.Close())
	return out
}

// TestHostileModelFiles: metadata that would make llama.cpp abort is refused in Go.
func TestHostileModelFiles(t *testing.T) {
	tiny := synthModel(t, "llama-tiny", gguf.TypeF16)
	for name, edit := range map[string]func(string, gguf.Value) gguf.Value{
		"block_count 0": func(k string, v gguf.Value) gguf.Value {
			if k == "llama.block_count" {
				return gguf.Uint32(0)
			}
			return v
		},
		"block_count 100000": func(k string, v gguf.Value) gguf.Value {
			if k == "llama.block_count" {
				return gguf.Uint32(100000)
			}
			return v
		},
		"duplicate token": func(k string, v gguf.Value) gguf.Value {
			if k == "tokenizer.ggml.tokens" {
				toks := v.Any().([]string)
				toks = append([]string(nil), toks...)
				toks[1000] = toks[1001]
				return gguf.Array(toks)
			}
			return v
		},
		"bos out of range": func(k string, v gguf.Value) gguf.Value {
			if k == "tokenizer.ggml.bos_token_id" {
				return gguf.Uint32(1 << 30)
			}
			return v
		},
	} {
		_, err := LoadModel(t.Context(), rewriteModel(t, tiny, edit), nil)
		var le *LoadError
		if assert.ErrorAs(t, err, &le, name) {
			t.Logf("%s: %v", name, err)
		}
	}
	// Bad files of package gguf's corpus are refused too.
	bad, err := filepath.Glob("gguf/testdata/bad/*.gguf")
	require.NoError(t, err)
	require.NotEmpty(t, bad)
	for _, p := range bad {
		_, err := LoadModel(t.Context(), p, nil)
		var le *LoadError
		assert.ErrorAs(t, err, &le, p)
	}
	m, err := LoadModel(t.Context(), tiny, nil)
	require.NoError(t, err, "the process lives and valid files load")
	m.Close()
}

// TestCallbackPanics: a panic in a user callback that llama.cpp calls (through the log or
// progress hooks) never unwinds into C; the call reports it or the message is dropped.
func TestCallbackPanics(t *testing.T) {
	in := synthModel(t, "llama-tiny", gguf.TypeF16)
	out := filepath.Join(t.TempDir(), "q.gguf")
	err := Quantize(t.Context(), in, out, &QuantizeParams{Type: "Q8_0", Progress: func(int, int, string) { panic("progress") }})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "progress callback panicked")
	_, statErr := os.Stat(out)
	assert.ErrorIs(t, statErr, os.ErrNotExist, "no half-trusted output")

	SetLogger(slog.New(panicHandler{}))
	defer SetLogger(nil)
	m, err := LoadModel(t.Context(), in, nil) // llama.cpp logs plenty while loading
	require.NoError(t, err)
	require.NoError(t, m.Close())
}

// panicHandler is a slog.Handler that panics on every record.
type panicHandler struct{}

func (panicHandler) Enabled(context.Context, slog.Level) bool  { return true }
func (panicHandler) Handle(context.Context, slog.Record) error { panic("handler") }
func (h panicHandler) WithAttrs([]slog.Attr) slog.Handler      { return h }
func (h panicHandler) WithGroup(string) slog.Handler           { return h }
