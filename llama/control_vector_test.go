package llama

import (
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/llamago/llamago/llama/gguf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// writeControlVector writes a control vector GGUF with the given direction tensors.
func writeControlVector(t *testing.T, path string, dirs map[string][]float32) {
	var tensors []gguf.TensorInfo
	for name, d := range dirs {
		tensors = append(tensors, gguf.TensorInfo{Name: name, Type: gguf.TypeF32, Shape: []int64{int64(len(d))}})
	}
	writeGGUF(t, path, []gguf.KV{
		{Key: "general.architecture", Value: gguf.String("controlvector")},
		{Key: "controlvector.model_hint", Value: gguf.String("llama")},
	}, tensors, func(name string) []byte { return f32bytes(dirs[name]) })
}

func cvecLogits(t *testing.T, m *Model, v *ControlVector) []float32 {
	c, err := m.NewContext(&ContextParams{NCtx: 128, Threads: 2})
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetControlVector(v, 0, 0))
	tokens, err := m.Tokenize(statePrompt, AddSpecial)
	require.NoError(t, err)
	require.NoError(t, c.DecodeTokens(t.Context(), tokens, 0, 0))
	l, err := c.Logits(-1)
	require.NoError(t, err)
	return l
}

func TestControlVector(t *testing.T) {
	m := loadTiny(t) // 2 layers: layer 1 takes a direction
	n := m.Info().NEmbd
	rng := rand.New(rand.NewPCG(3, 5))
	dir := make([]float32, n)
	for i := range dir {
		dir[i] = float32(rng.NormFloat64())
	}
	double := make([]float32, n)
	for i, x := range dir {
		double[i] = 2 * x
	}
	tmp := t.TempDir()
	one, two := filepath.Join(tmp, "one.gguf"), filepath.Join(tmp, "two.gguf")
	writeControlVector(t, one, map[string][]float32{"direction.1": dir})
	writeControlVector(t, two, map[string][]float32{"direction.1": double})

	v, err := LoadControlVector(one, 2)
	require.NoError(t, err)
	w, err := LoadControlVector(two, 1)
	require.NoError(t, err)
	assert.Equal(t, w, v, "strength scales the file's directions")
	half, err := LoadControlVector(one, 1)
	require.NoError(t, err)
	require.NoError(t, half.Add(half))
	assert.Equal(t, w, half, "Add sums directions")

	base := cvecLogits(t, m, nil)
	assert.Equal(t, base, cvecLogits(t, m, &ControlVector{NEmbd: n, Data: make([]float32, n)}), "a zero vector changes nothing")
	steered := cvecLogits(t, m, v)
	assert.NotEqual(t, base, steered)

	// Set, then cleared in the same context: the base model again.
	c, err := m.NewContext(&ContextParams{NCtx: 128, Threads: 2})
	require.NoError(t, err)
	defer c.Close()
	tokens, err := m.Tokenize(statePrompt, AddSpecial)
	require.NoError(t, err)
	for _, cv := range []*ControlVector{v, nil} {
		require.NoError(t, c.SetControlVector(cv, 0, 0))
		require.NoError(t, c.MemoryClear(false))
		require.NoError(t, c.DecodeTokens(t.Context(), tokens, 0, 0))
		got, err := c.Logits(-1)
		require.NoError(t, err)
		if cv == nil {
			assert.Equal(t, base, got, "cleared")
		} else {
			assert.Equal(t, steered, got)
		}
	}

	for name, err := range map[string]error{
		"another embedding size": c.SetControlVector(&ControlVector{NEmbd: n + 1, Data: make([]float32, n+1)}, 0, 0),
		"layer 0":                c.SetControlVector(v, 0, 1),
		"past the last layer":    c.SetControlVector(v, 1, 3),
		"first after last":       c.SetControlVector(v, 2, 1),
		"NaN":                    c.SetControlVector(&ControlVector{NEmbd: n, Data: append(make([]float32, n-1), float32(math.NaN()))}, 0, 0),
		"no data":                c.SetControlVector(&ControlVector{NEmbd: n}, 0, 0),
	} {
		assert.ErrorIs(t, err, ErrInvalidParams, name)
	}
}

func TestLoadControlVectorRefusesBadFiles(t *testing.T) {
	tmp := t.TempDir()
	file := func(name string, dirs map[string][]float32) string {
		p := filepath.Join(tmp, name)
		writeControlVector(t, p, dirs)
		return p
	}
	twoD := filepath.Join(tmp, "2d.gguf")
	writeGGUF(t, twoD, nil, []gguf.TensorInfo{{Name: "direction.1", Type: gguf.TypeF32, Shape: []int64{2, 2}}},
		func(string) []byte { return make([]byte, 16) })
	garbage := filepath.Join(tmp, "garbage.gguf")
	require.NoError(t, os.WriteFile(garbage, []byte("not a gguf file"), 0o644))
	for name, path := range map[string]string{
		"missing":       filepath.Join(tmp, "missing.gguf"),
		"garbage":       garbage,
		"no directions": file("none.gguf", map[string][]float32{"other": {1}}),
		"layer 0":       file("zero.gguf", map[string][]float32{"direction.0": {1, 2}}),
		"absurd layer":  file("huge.gguf", map[string][]float32{"direction.99999999": {1, 2}}),
		"not a number":  file("nan.gguf", map[string][]float32{"direction.x": {1, 2}}),
		"sizes differ":  file("sizes.gguf", map[string][]float32{"direction.1": {1, 2}, "direction.2": {1, 2, 3}}),
		"a NaN value":   file("nanval.gguf", map[string][]float32{"direction.1": {1, float32(math.NaN())}}),
		"a 2-D tensor":  twoD,
	} {
		_, err := LoadControlVector(path, 1)
		var le *LoadError
		assert.ErrorAs(t, err, &le, name)
	}
	_, err := LoadControlVector(file("ok.gguf", map[string][]float32{"direction.1": {1}}), float32(math.Inf(1)))
	assert.ErrorIs(t, err, ErrInvalidParams)
}
