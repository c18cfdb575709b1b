package llama

import (
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/llamago/llamago/llama/gguf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tensorTypes reads the type of every tensor of a GGUF file.
func tensorTypes(t *testing.T, path string) (map[string]gguf.TensorType, gguf.FileType) {
	t.Helper()
	f, err := gguf.Open(path)
	require.NoError(t, err)
	defer f.Close()
	types := map[string]gguf.TensorType{}
	for _, ti := range f.Tensors {
		types[ti.Name] = ti.Type
	}
	ft, err := f.FileType()
	require.NoError(t, err)
	return types, ft
}

// logitsOf decodes a fixed prompt and returns the logits of its last token.
func logitsOf(t *testing.T, path string) []float32 {
	t.Helper()
	m, err := LoadModel(t.Context(), path, &ModelParams{GPULayers: 0})
	require.NoError(t, err)
	defer m.Close()
	c, err := m.NewContext(&ContextParams{NCtx: 256})
	require.NoError(t, err)
	defer c.Close()
	toks, err := m.Tokenize("Quantization keeps the logits of a model close to the original ones, within a tolerance.", AddSpecial)
	require.NoError(t, err)
	require.NoError(t, c.DecodeTokens(t.Context(), toks, 0, 0))
	l, err := c.Logits(-1)
	require.NoError(t, err)
	return l
}

// closeness returns the cosine similarity of two logit vectors and their largest
// difference relative to the reference's largest magnitude.
func closeness(ref, got []float32) (cos, relMax float64) {
	var dot, nr, ng, maxDiff, maxRef float64
	for i := range ref {
		r, g := float64(ref[i]), float64(got[i])
		dot += r * g
		nr += r * r
		ng += g * g
		maxDiff = math.Max(maxDiff, math.Abs(r-g))
		maxRef = math.Max(maxRef, math.Abs(r))
	}
	return dot / math.Sqrt(nr*ng), maxDiff / maxRef
}

// Tolerances: the synthetic models have random weights (std 0.02) and small logits, so
// quantization noise weighs more than in trained models. Measured on mistral-256:
// Q8_0 cosine 0.99986, max |diff|/max |logit| 0.017; Q4_K_M cosine 0.984, 0.18. The
// bounds leave a margin over those while failing on wrong types or garbage
// (an unrelated logit vector has cosine near 0).
func TestQuantizeTypesAndCloseness(t *testing.T) {
	// mistral-256: every dimension a multiple of the k-quant block, untied output.
	in := synthModel(t, "mistral-256", gguf.TypeF16)
	dir := t.TempDir()
	ref := logitsOf(t, in)
	for _, tc := range []struct {
		typ      string
		ft       gguf.FileType
		minCos   float64
		maxRel   float64
		expected func(name string) []gguf.TensorType // allowed types of a 2-D weight
	}{
		{"Q8_0", gguf.FileTypeMostlyQ8_0, 0.9995, 0.03, func(string) []gguf.TensorType {
			return []gguf.TensorType{gguf.TypeQ8_0}
		}},
		{"Q4_K_M", gguf.FileTypeMostlyQ4_K_M, 0.97, 0.3, func(name string) []gguf.TensorType {
			switch {
			case name == "output.weight":
				return []gguf.TensorType{gguf.TypeQ6_K}
			case strings.HasSuffix(name, "attn_v.weight"), strings.HasSuffix(name, "ffn_down.weight"):
				// llama.cpp gives some of these more bits (Q6_K), depending on the layer
				return []gguf.TensorType{gguf.TypeQ4_K, gguf.TypeQ6_K}
			default:
				return []gguf.TensorType{gguf.TypeQ4_K}
			}
		}},
	} {
		t.Run(tc.typ, func(t *testing.T) {
			out := filepath.Join(dir, tc.typ+".gguf")
			require.NoError(t, Quantize(t.Context(), in, out, &QuantizeParams{Type: tc.typ, Threads: 2}))
			types, ft := tensorTypes(t, out)
			assert.Equal(t, tc.ft, ft)
			var k4 int
			for name, typ := range types {
				if strings.HasSuffix(name, "norm.weight") {
					assert.Equal(t, gguf.TypeF32, typ, name)
					continue
				}
				assert.Contains(t, tc.expected(name), typ, name)
				if typ == gguf.TypeQ4_K {
					k4++
				}
			}
			if tc.typ == "Q4_K_M" {
				assert.Greater(t, k4, len(types)/2, "most weights are Q4_K")
			}
			cos, rel := closeness(ref, logitsOf(t, out))
			t.Logf("%s vs F16 logits: cosine %.6f, max |diff| / max |logit| %.4f", tc.typ, cos, rel)
			assert.GreaterOrEqual(t, cos, tc.minCos)
			assert.LessOrEqual(t, rel, tc.maxRel)
		})
	}

	// Overrides of the output and embedding types, and pure quantization.
	out := filepath.Join(dir, "override.gguf")
	require.NoError(t, Quantize(t.Context(), in, out, &QuantizeParams{
		Type: "Q4_K_M", Pure: true, OutputTensorType: "q8_0", TokenEmbeddingType: "F16",
	}))
	types, _ := tensorTypes(t, out)
	assert.Equal(t, gguf.TypeQ8_0, types["output.weight"])
	assert.Equal(t, gguf.TypeF16, types["token_embd.weight"])
	for name, typ := range types {
		if strings.HasSuffix(name, "ffn_down.weight") || strings.HasSuffix(name, "attn_v.weight") {
			assert.Equal(t, gguf.TypeQ4_K, typ, "pure: %s", name)
		}
	}
	cos, _ := closeness(ref, logitsOf(t, out))
	assert.Greater(t, cos, 0.97)
}

// writeIMatrix writes an imatrix in llama-imatrix's GGUF format for the weights of a
// model: sums of squares that, divided by the counts, give w.
func writeIMatrix(t *testing.T, model string, w func(name string, i int) float32, edit func(name string, v []float32) []float32) string {
	t.Helper()
	f, err := gguf.Open(model)
	require.NoError(t, err)
	defer f.Close()
	var infos []gguf.TensorInfo
	var data [][]float32
	for _, ti := range f.Tensors {
		if len(ti.Shape) != 2 || ti.Name == "token_embd.weight" {
			continue
		}
		v := make([]float32, ti.Shape[0])
		for i := range v {
			v[i] = w(ti.Name, i) * 10 // 10 tokens
		}
		if edit != nil {
			v = edit(ti.Name, v)
		}
		infos = append(infos,
			gguf.TensorInfo{Name: ti.Name + ".in_sum2", Type: gguf.TypeF32, Shape: []int64{int64(len(v)), 1}},
			gguf.TensorInfo{Name: ti.Name + ".counts", Type: gguf.TypeF32, Shape: []int64{1, 1}})
		data = append(data, v, []float32{10})
	}
	meta := []gguf.KV{
		{Key: "general.type", Value: gguf.String("imatrix")},
		{Key: "imatrix.datasets", Value: gguf.Array([]string{"test"})},
		{Key: "imatrix.chunk_count", Value: gguf.Uint32(1)},
		{Key: "imatrix.chunk_size", Value: gguf.Uint32(10)},
	}
	var buf bytes.Buffer
	gw, err := gguf.NewWriter(&buf, meta, infos)
	require.NoError(t, err)
	for _, v := range data {
		b, err := gguf.Encode(nil, gguf.TypeF32, v)
		require.NoError(t, err)
		_, err = gw.Write(b)
		require.NoError(t, err)
	}
	require.NoError(t, gw.Close())
	p := filepath.Join(t.TempDir(), "imatrix.gguf")
	require.NoError(t, os.WriteFile(p, buf.Bytes(), 0o644))
	return p
}

func TestQuantizeIMatrix(t *testing.T) {
	in := synthModel(t, "mistral-256", gguf.TypeF16)
	dir := t.TempDir()
	weight := func(_ string, i int) float32 { return 1 + float32(i%7) }
	imat := writeIMatrix(t, in, weight, nil)

	entries, err := ReadIMatrix(imat)
	require.NoError(t, err)
	require.Contains(t, entries, "blk.0.ffn_down.weight")
	assert.Len(t, entries["blk.0.ffn_down.weight"], 512)
	assert.InDelta(t, 3, entries["blk.1.attn_q.weight"][2], 1e-6, "sums divided by counts")

	out := filepath.Join(dir, "imat.gguf")
	require.NoError(t, Quantize(t.Context(), in, out, &QuantizeParams{Type: "Q4_K_M", IMatrix: imat}))
	withIM := logitsOf(t, out)
	cos, _ := closeness(logitsOf(t, in), withIM)
	t.Logf("Q4_K_M with imatrix vs F16 logits: cosine %.6f", cos)
	assert.Greater(t, cos, 0.97)

	// The legacy .dat format: the same entries.
	var dat bytes.Buffer
	le := func(v any) { require.NoError(t, binary.Write(&dat, binary.LittleEndian, v)) }
	le(int32(1))
	le(int32(len("blk.0.attn_q.weight")))
	dat.WriteString("blk.0.attn_q.weight")
	le([2]int32{2, 256})
	v := make([]float32, 256)
	for i := range v {
		v[i] = 2 * weight("", i)
	}
	le(v)
	datPath := filepath.Join(dir, "imatrix.dat")
	require.NoError(t, os.WriteFile(datPath, dat.Bytes(), 0o644))
	legacy, err := ReadIMatrix(datPath)
	require.NoError(t, err)
	assert.Equal(t, entries["blk.0.attn_q.weight"], legacy["blk.0.attn_q.weight"])

	// Bad matrices are refused before llama.cpp sees them.
	nan := writeIMatrix(t, in, weight, func(name string, v []float32) []float32 {
		if name == "blk.0.attn_k.weight" {
			v[3] = float32(math.NaN())
		}
		return v
	})
	assert.ErrorIs(t, Quantize(t.Context(), in, filepath.Join(dir, "n.gguf"), &QuantizeParams{Type: "Q4_K_M", IMatrix: nan}), ErrInvalidParams)
	short := writeIMatrix(t, in, weight, func(name string, v []float32) []float32 { return v[:len(v)-32] })
	assert.ErrorIs(t, Quantize(t.Context(), in, filepath.Join(dir, "s.gguf"), &QuantizeParams{Type: "Q4_K_M", IMatrix: short}), ErrInvalidParams)
	garbage := filepath.Join(dir, "garbage.dat")
	require.NoError(t, os.WriteFile(garbage, []byte("not an imatrix"), 0o644))
	assert.Error(t, Quantize(t.Context(), in, filepath.Join(dir, "g.gguf"), &QuantizeParams{IMatrix: garbage}))
	_, err = os.Stat(filepath.Join(dir, "g.gguf"))
	assert.True(t, os.IsNotExist(err))
}

func TestQuantizeParamErrors(t *testing.T) {
	in := synthModel(t, "llama-tiny", gguf.TypeF16)
	dir := t.TempDir()
	for _, p := range []QuantizeParams{
		{OutputTensorType: "q9_9"},
		{TokenEmbeddingType: "i32"},
		{OutputTensorType: "iq2_xxs"}, // needs an imatrix
		{Threads: -1},
		{Type: "q8_0"}, // names are llama-quantize's, upper case
	} {
		assert.ErrorIs(t, Quantize(t.Context(), in, filepath.Join(dir, "x.gguf"), &p), ErrInvalidParams, "%+v", p)
	}
	assert.Contains(t, QuantizeTensorTypes(), "q4_K")
	assert.Contains(t, QuantizeTypes(), "Q4_K_M")
}
