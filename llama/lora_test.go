package llama

import (
	"encoding/binary"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/llamago/llamago/llama/gguf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// loraPair is a LoRA adapter for two weights of a model: B·A of rank r per weight.
type loraPair struct {
	a, b  []float32 // a: ggml [in, r] (r rows of in), b: [r, out]
	in    int
	out   int
	shape []int64
}

const (
	loraRank  = 4
	loraAlpha = 8 // llama.cpp scales B·A by scale·alpha/rank
)

var loraTargets = []string{"blk.0.attn_q.weight", "blk.1.ffn_up.weight"}

func f32s(b []byte) []float32 {
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

func f32bytes(v []float32) []byte {
	out := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(x))
	}
	return out
}

func tensorFloats(t *testing.T, f *gguf.File, name string) []float32 {
	r, err := f.TensorData(name)
	require.NoError(t, err)
	b, err := io.ReadAll(r)
	require.NoError(t, err)
	return f32s(b)
}

// writeGGUF writes meta and the tensors of src (replaced where data has them) to path.
func writeGGUF(t *testing.T, path string, meta []gguf.KV, tensors []gguf.TensorInfo, data func(name string) []byte) {
	out, err := os.Create(path)
	require.NoError(t, err)
	defer out.Close()
	w, err := gguf.NewWriter(out, meta, tensors)
	require.NoError(t, err)
	for _, ti := range tensors {
		require.NoError(t, w.WriteTensor(ti.Name, data(ti.Name)))
	}
	require.NoError(t, w.Close())
}

// loraFixture writes, for the F32 llama-tiny model, a LoRA adapter of loraTargets and
// returns its path, the base path and a function that writes the model with the adapter
// merged at a scale: W + scale·alpha/rank·B·A, computed here in Go.
func loraFixture(t *testing.T) (base, adapter string, merged func(scale float32) string) {
	base = synthModel(t, "llama-tiny", gguf.TypeF32)
	f, err := gguf.Open(base)
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	rng := rand.New(rand.NewPCG(7, 11))
	pairs := map[string]loraPair{}
	var tensors []gguf.TensorInfo
	for _, name := range loraTargets {
		ti, ok := f.Tensor(name)
		require.True(t, ok, name)
		p := loraPair{in: int(ti.Shape[0]), out: int(ti.Shape[1]), shape: ti.Shape}
		p.a, p.b = make([]float32, loraRank*p.in), make([]float32, p.out*loraRank)
		for i := range p.a {
			p.a[i] = float32(rng.NormFloat64() * 0.2)
		}
		for i := range p.b {
			p.b[i] = float32(rng.NormFloat64() * 0.2)
		}
		pairs[name] = p
		tensors = append(tensors,
			gguf.TensorInfo{Name: name + ".lora_a", Type: gguf.TypeF32, Shape: []int64{int64(p.in), loraRank}},
			gguf.TensorInfo{Name: name + ".lora_b", Type: gguf.TypeF32, Shape: []int64{loraRank, int64(p.out)}})
	}
	dir := t.TempDir()
	adapter = filepath.Join(dir, "adapter.gguf")
	writeGGUF(t, adapter, []gguf.KV{
		{Key: "general.architecture", Value: gguf.String("llama")},
		{Key: "general.type", Value: gguf.String("adapter")},
		{Key: "adapter.type", Value: gguf.String("lora")},
		{Key: "adapter.lora.alpha", Value: gguf.Float32(loraAlpha)},
	}, tensors, func(name string) []byte {
		if p, ok := pairs[name[:len(name)-len(".lora_a")]]; ok {
			if name[len(name)-1] == 'a' {
				return f32bytes(p.a)
			}
			return f32bytes(p.b)
		}
		t.Fatalf("no data for %s", name)
		return nil
	})

	merged = func(scale float32) string {
		path := filepath.Join(dir, "merged.gguf")
		writeGGUF(t, path, f.Metadata, f.Tensors, func(name string) []byte {
			w := tensorFloats(t, f, name)
			p, ok := pairs[name]
			if !ok {
				r, err := f.TensorData(name)
				require.NoError(t, err)
				b, err := io.ReadAll(r)
				require.NoError(t, err)
				return b
			}
			s := float64(scale) * loraAlpha / loraRank
			for o := range p.out {
				for i := range p.in {
					var ba float64
					for k := range loraRank {
						ba += float64(p.b[o*loraRank+k]) * float64(p.a[k*p.in+i])
					}
					w[o*p.in+i] += float32(s * ba)
				}
			}
			return f32bytes(w)
		})
		return path
	}
	return base, adapter, merged
}

// loraLogits decodes the prompt in a fresh context of m (with the adapters) and returns the
// last token's logits.
func loraLogits(t *testing.T, m *Model, loras ...LoRAScale) []float32 {
	c, err := m.NewContext(&ContextParams{NCtx: 128, Threads: 2})
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetLoRA(loras...))
	tokens, err := m.Tokenize(statePrompt, AddSpecial)
	require.NoError(t, err)
	require.NoError(t, c.DecodeTokens(t.Context(), tokens, 0, 0))
	l, err := c.Logits(-1)
	require.NoError(t, err)
	return l
}

func assertLogitsNear(t *testing.T, want, got []float32, msg string) {
	t.Helper()
	require.Len(t, got, len(want))
	worst := 0.0
	for i := range want {
		worst = max(worst, math.Abs(float64(want[i]-got[i])))
	}
	assert.Less(t, worst, 1e-3, "%s: largest logit difference", msg)
}

// A LoRA adapter at scale s gives the logits of the model whose weights were merged as
// W + s·alpha/rank·B·A; scale 0 gives the base model's.
func TestLoRAMatchesMergedWeights(t *testing.T) {
	basePath, adapterPath, merged := loraFixture(t)
	base, err := LoadModel(t.Context(), basePath, &ModelParams{GPULayers: 0})
	require.NoError(t, err)
	defer base.Close()
	adapter, err := base.LoadLoRA(adapterPath)
	require.NoError(t, err)
	defer adapter.Close()
	assert.Equal(t, "lora", adapter.Metadata()["adapter.type"])

	plain := loraLogits(t, base)
	assert.Equal(t, plain, loraLogits(t, base, LoRAScale{adapter, 0}), "scale 0 is the base model")
	for _, scale := range []float32{1, 0.5} {
		m, err := LoadModel(t.Context(), merged(scale), &ModelParams{GPULayers: 0})
		require.NoError(t, err)
		want := loraLogits(t, m)
		m.Close()
		got := loraLogits(t, base, LoRAScale{adapter, scale})
		assertLogitsNear(t, want, got, "adapter against merged weights")
		assert.NotEqual(t, plain, got, "the adapter changes the output")
	}

	// Scales change between decodes of one context; none clears the adapters.
	c, err := base.NewContext(&ContextParams{NCtx: 128, Threads: 2})
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetLoRA(LoRAScale{adapter, 1}))
	assert.Equal(t, []LoRAScale{{adapter, 1}}, c.LoRA())
	require.NoError(t, c.SetLoRA())
	assert.Empty(t, c.LoRA())
}

// An adapter stays usable while a context applies it, whatever is closed first.
func TestLoRALifetime(t *testing.T) {
	basePath, adapterPath, _ := loraFixture(t)
	base, err := LoadModel(t.Context(), basePath, &ModelParams{GPULayers: 0})
	require.NoError(t, err)
	adapter, err := base.LoadLoRA(adapterPath)
	require.NoError(t, err)
	c, err := base.NewContext(&ContextParams{NCtx: 128, Threads: 2})
	require.NoError(t, err)
	require.NoError(t, c.SetLoRA(LoRAScale{adapter, 1}))
	require.NoError(t, adapter.Close())
	require.NoError(t, base.Close())
	require.NoError(t, c.DecodeTokens(t.Context(), []Token{1, 2, 3}, 0, 0), "the context still decodes through the closed adapter")
	assert.ErrorIs(t, c.SetLoRA(LoRAScale{adapter, 1}), ErrClosed, "a closed adapter cannot be applied again")
	assert.Equal(t, []LoRAScale{{adapter, 1}}, c.LoRA(), "a failed SetLoRA keeps what was applied")
	require.NoError(t, c.Close())
	require.NoError(t, adapter.Close(), "Close twice")
}

func TestLoRARefusesBadInput(t *testing.T) {
	basePath, adapterPath, _ := loraFixture(t)
	base, err := LoadModel(t.Context(), basePath, &ModelParams{GPULayers: 0})
	require.NoError(t, err)
	defer base.Close()
	other := loadQwenTiny(t)
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.gguf")
	require.NoError(t, os.WriteFile(garbage, []byte("GGUF\x03\x00\x00\x00garbage"), 0o644))
	data, err := os.ReadFile(adapterPath)
	require.NoError(t, err)
	truncated := filepath.Join(dir, "truncated.gguf")
	require.NoError(t, os.WriteFile(truncated, data[:len(data)-100], 0o644))

	for name, path := range map[string]string{
		"missing": filepath.Join(dir, "missing.gguf"), "directory": dir, "garbage": garbage,
		"truncated": truncated, "a model, not an adapter": basePath,
	} {
		_, err := base.LoadLoRA(path)
		var le *LoadError
		assert.ErrorAs(t, err, &le, name)
	}
	_, err = other.LoadLoRA(adapterPath)
	assert.ErrorContains(t, err, "mismatch", "an adapter of another architecture")

	adapter, err := base.LoadLoRA(adapterPath)
	require.NoError(t, err)
	defer adapter.Close()
	otherCtx, err := other.NewContext(&ContextParams{NCtx: 128, Threads: 1})
	require.NoError(t, err)
	defer otherCtx.Close()
	c, err := base.NewContext(&ContextParams{NCtx: 128, Threads: 1})
	require.NoError(t, err)
	defer c.Close()
	assert.ErrorIs(t, otherCtx.SetLoRA(LoRAScale{adapter, 1}), ErrInvalidParams, "another model's context")
	assert.ErrorIs(t, c.SetLoRA(LoRAScale{nil, 1}), ErrInvalidParams)
	assert.ErrorIs(t, c.SetLoRA(LoRAScale{adapter, float32(math.NaN())}), ErrInvalidParams)
	assert.ErrorIs(t, c.SetLoRA(LoRAScale{adapter, 1}, LoRAScale{adapter, 2}), ErrInvalidParams)
	_, err = LoadModel(t.Context(), adapterPath, &ModelParams{GPULayers: 0})
	assert.Error(t, err, "an adapter is not a model")
}
