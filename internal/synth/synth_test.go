package synth

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"github.com/llamago/llamago/internal/llamacpp"
	"github.com/llamago/llamago/llama/gguf"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Vocabulary sizes of the vocab files the shapes use.
var vocabSizes = map[string]int{"llama-bpe": 128256, "llama-spm": 32000, "qwen2": 151936, "bert-bge": 30522}

// expectedParams counts parameters from the published architecture
// description, independently of Shape.tensors.
func expectedParams(s Shape, vocab int) int64 {
	e, ff, v := int64(s.Embd), int64(s.FF), int64(vocab)
	if s.Arch == "bert" {
		// Embeddings (token, 2 token types, positions) and their norm; per layer
		// q, k, v, o with biases, two layer norms with biases, up/down with biases.
		n := e*v + 2*e + e*int64(s.Ctx) + 2*e
		n += int64(s.Layers) * (4*(e*e+e) + 2*2*e + e*ff + ff + ff*e + e)
		if s.Pooling == "rank" {
			n += e*e + e + e + 1
		}
		return n
	}
	kv := e / int64(s.Heads) * int64(s.HeadsKV)
	attn := e*e + 2*e*kv + e*e // q, k, v, o
	if s.QKVBias {
		attn += e + 2*kv
	}
	layer := attn + 3*e*ff + 2*e // + gate/up/down + two norms
	n := e*v + int64(s.Layers)*layer + e
	if !s.TiedEmbeddings {
		n += e * v
	}
	return n
}

func TestShapeParams(t *testing.T) {
	// Published parameter counts (with the vocab files' sizes).
	published := map[string]float64{
		"llama3-8b":   8.03e9,
		"llama3.2-1b": 1.24e9,
		"mistral-7b":  7.24e9,
		"qwen2-0.5b":  0.494e9,
		"qwen2-7b":    7.62e9,
		"bge-small":   33.4e6,
	}
	for _, s := range Shapes() {
		t.Run(s.Name, func(t *testing.T) {
			require.NoError(t, s.Validate())
			vocab, ok := vocabSizes[s.Vocab]
			require.True(t, ok, "vocab %s", s.Vocab)
			n, err := s.Params(vocab)
			require.NoError(t, err)
			assert.Equal(t, expectedParams(s, vocab), n)
			if p, ok := published[s.Name]; ok {
				assert.InEpsilon(t, p, float64(n), 0.01, "%d parameters", n)
			}
		})
	}
	_, err := ShapeByName("gpt-5")
	assert.ErrorContains(t, err, `unknown shape "gpt-5"`)
}

func TestShapeTensors(t *testing.T) {
	s, err := ShapeByName("qwen2-7b")
	require.NoError(t, err)
	ts, err := s.Tensors(1000, gguf.TypeQ8_0)
	require.NoError(t, err)
	byName := map[string]gguf.TensorInfo{}
	for _, ti := range ts {
		byName[ti.Name] = ti
	}
	assert.Len(t, ts, 1+28*12+2)
	// Shapes as llama.cpp's create_tensor calls (ggml order).
	for name, shape := range map[string][]int64{
		"token_embd.weight":         {3584, 1000},
		"output.weight":             {3584, 1000},
		"output_norm.weight":        {3584},
		"blk.0.attn_norm.weight":    {3584},
		"blk.0.attn_q.weight":       {3584, 3584},
		"blk.0.attn_q.bias":         {3584},
		"blk.0.attn_k.weight":       {3584, 512}, // 4 kv heads of 128
		"blk.0.attn_k.bias":         {512},
		"blk.0.attn_v.weight":       {3584, 512},
		"blk.0.attn_v.bias":         {512},
		"blk.27.attn_output.weight": {3584, 3584},
		"blk.27.ffn_norm.weight":    {3584},
		"blk.27.ffn_gate.weight":    {3584, 18944},
		"blk.27.ffn_up.weight":      {3584, 18944},
		"blk.27.ffn_down.weight":    {18944, 3584},
	} {
		ti, ok := byName[name]
		if assert.True(t, ok, name) {
			assert.Equal(t, shape, ti.Shape, name)
			if len(shape) == 1 {
				assert.Equal(t, gguf.TypeF32, ti.Type, "%s: norms and biases stay f32", name)
			} else {
				assert.Equal(t, gguf.TypeQ8_0, ti.Type, name)
			}
		}
	}

	tied, err := ShapeByName("llama3.2-1b")
	require.NoError(t, err)
	ts, err = tied.Tensors(1000, gguf.TypeF16)
	require.NoError(t, err)
	for _, ti := range ts {
		assert.NotEqual(t, "output.weight", ti.Name, "tied embeddings")
		assert.NotContains(t, ti.Name, ".bias", "llama has no biases")
	}

	odd := Shape{Name: "odd", Arch: "llama", Embd: 48, Layers: 1, Heads: 4, HeadsKV: 2, FF: 64, Ctx: 64, RopeBase: 1e4, RMSEps: 1e-5}
	_, err = odd.Tensors(100, gguf.TypeQ8_0)
	assert.ErrorContains(t, err, "not a multiple of the q8_0 block size")
	_, err = odd.Tensors(100, gguf.TypeF16)
	assert.NoError(t, err)
	_, err = odd.Tensors(100, gguf.TypeQ4_K)
	assert.ErrorContains(t, err, "not supported")
	odd.Heads = 5
	assert.ErrorContains(t, odd.Validate(), "not a multiple of n_head")
	odd.Arch = "gpt2"
	assert.ErrorContains(t, odd.Validate(), "unsupported architecture")
}

// TestSynthHeader8B checks the complete layout of the 8B shape without
// writing its 16 GB of data.
func TestSynthHeader8B(t *testing.T) {
	meta, tensors, err := synthLayout(Options{Shape: "llama3-8b", VocabPath: vocabFor(t, "llama3-8b"), Type: gguf.TypeF16})
	require.NoError(t, err)
	assert.Len(t, tensors, 1+32*9+2)
	var size int64
	for _, ti := range tensors {
		size += ti.Size()
	}
	assert.Equal(t, int64(8030261248*2-(1+32*2)*4096*2)+(1+32*2)*4096*4, size, "f16 weights + f32 norms")

	var buf bytes.Buffer
	infos := make([]gguf.TensorInfo, len(tensors))
	for i, ti := range tensors {
		infos[i] = ti.TensorInfo
	}
	w, err := gguf.NewWriter(&buf, meta, infos)
	require.NoError(t, err)
	_, err = gguf.Read(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	require.Error(t, err, "the header alone is short of data")
	assert.ErrorContains(t, err, "beyond the end")

	f, err := gguf.Read(sparseReader{buf.Bytes()}, w.Size())
	require.NoError(t, err)
	checkHparams(t, f, "llama3-8b")
}

// sparseReader reads data followed by zeros, like a sparse file.
type sparseReader struct{ data []byte }

func (r sparseReader) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	if off < int64(len(r.data)) {
		n = copy(p, r.data[off:])
	}
	clear(p[n:])
	return len(p), nil
}

// checkHparams verifies the metadata llama.cpp reads for a shape.
func checkHparams(t *testing.T, f *gguf.File, shape string) {
	t.Helper()
	s, err := ShapeByName(shape)
	require.NoError(t, err)
	arch, err := f.String("general.architecture")
	require.NoError(t, err)
	assert.Equal(t, s.Arch, arch)
	for key, want := range map[string]int{
		"context_length": s.Ctx, "embedding_length": s.Embd, "block_count": s.Layers,
		"feed_forward_length": s.FF, "attention.head_count": s.Heads, "attention.head_count_kv": s.HeadsKV,
	} {
		got, err := f.Uint32(arch + "." + key)
		if assert.NoError(t, err, key) {
			assert.Equal(t, want, int(got), key)
		}
	}
	eps, err := f.Float32(arch + ".attention.layer_norm_rms_epsilon")
	assert.NoError(t, err)
	assert.Equal(t, s.RMSEps, eps)
	base, err := f.Float32(arch + ".rope.freq_base")
	assert.NoError(t, err)
	assert.Equal(t, s.RopeBase, base)
	tokens, err := f.Strings("tokenizer.ggml.tokens")
	require.NoError(t, err)
	if arch == "llama" {
		rot, err := f.Uint32("llama.rope.dimension_count")
		assert.NoError(t, err)
		assert.Equal(t, s.Embd/s.Heads, int(rot))
		n, err := f.Uint32("llama.vocab_size")
		assert.NoError(t, err)
		assert.Equal(t, len(tokens), int(n))
	}
	emb, ok := f.Tensor("token_embd.weight")
	require.True(t, ok)
	assert.Equal(t, []int64{int64(s.Embd), int64(len(tokens))}, emb.Shape)
	_, hasOutput := f.Tensor("output.weight")
	assert.Equal(t, !s.TiedEmbeddings, hasOutput)
	_, hasBias := f.Tensor("blk.0.attn_q.bias")
	assert.Equal(t, s.QKVBias, hasBias)
}

func TestSynthTiny(t *testing.T) {
	// Every type on the smallest shape, one type each on the big-vocab ones
	// (keeps -race runs short).
	types := map[string][]gguf.TensorType{
		"mistral-tiny": {gguf.TypeF32, gguf.TypeF16, gguf.TypeBF16, gguf.TypeQ8_0},
		"llama-tiny":   {gguf.TypeF16},
		"qwen2-tiny":   {gguf.TypeQ8_0},
	}
	for _, shape := range []string{"llama-tiny", "mistral-tiny", "qwen2-tiny"} {
		for _, typ := range types[shape] {
			t.Run(fmt.Sprintf("%s/%s", shape, typ), func(t *testing.T) {
				t.Parallel()
				vocab := vocabFor(t, shape)
				p := filepath.Join(t.TempDir(), "model.gguf")
				require.NoError(t, WriteFile(p, Options{Shape: shape, VocabPath: vocab, Type: typ, Seed: 7}))
				f, err := gguf.Open(p)
				require.NoError(t, err)
				defer f.Close()
				checkHparams(t, f, shape)
				ft, err := f.FileType()
				assert.NoError(t, err)
				wantFT, _ := fileTypeFor(typ)
				assert.Equal(t, wantFT, ft)

				// The tokenizer is copied verbatim.
				v, err := gguf.Open(vocab)
				require.NoError(t, err)
				defer v.Close()
				for _, kv := range v.Metadata {
					if strings.HasPrefix(kv.Key, "tokenizer.") {
						got, ok := f.Lookup(kv.Key)
						if assert.True(t, ok, kv.Key) {
							assert.Equal(t, kv.Value, got, kv.Key)
						}
					}
				}

				for _, ti := range f.Tensors {
					vals := tensorValues(t, f, ti)
					switch {
					case strings.HasSuffix(ti.Name, "norm.weight"):
						assert.Equal(t, gguf.TypeF32, ti.Type)
						for _, x := range vals {
							if x != 1 {
								assert.Failf(t, "norm weights must be 1", "%s has %g", ti.Name, x)
								break
							}
						}
					case len(vals) >= 4096:
						mean, std := meanStd(vals)
						assert.InDelta(t, 0, mean, 0.002, "%s mean", ti.Name)
						assert.InEpsilon(t, synthStd, std, 0.05, "%s std", ti.Name)
					default: // small biases: just not constant
						_, std := meanStd(vals)
						assert.Greater(t, std, 0.005, ti.Name)
					}
				}
			})
		}
	}
}

// tensorValues decodes the tensor's first values (up to 64K, enough for
// statistics and fast under -race).
func tensorValues(t *testing.T, f *gguf.File, ti gguf.TensorInfo) []float32 {
	t.Helper()
	r, err := f.TensorData(ti.Name)
	require.NoError(t, err)
	n := min(ti.Elements(), 1<<16) // a multiple of every block size used
	b := make([]byte, n/ti.Type.BlockSize()*ti.Type.BlockBytes())
	_, err = io.ReadFull(r, b)
	require.NoError(t, err)
	vals, err := gguf.Decode(nil, ti.Type, b)
	require.NoError(t, err)
	require.Len(t, vals, int(n))
	return vals
}

func meanStd(v []float32) (mean, std float64) {
	for _, x := range v {
		mean += float64(x)
	}
	mean /= float64(len(v))
	for _, x := range v {
		std += (float64(x) - mean) * (float64(x) - mean)
	}
	return mean, math.Sqrt(std / float64(len(v)))
}

func TestSynthDeterministic(t *testing.T) {
	vocab := vocabFor(t, "mistral-tiny")
	hash := func(seed uint64, workers int, typ gguf.TensorType) [32]byte {
		h := sha256.New()
		require.NoError(t, Write(h, Options{Shape: "mistral-tiny", VocabPath: vocab, Type: typ, Seed: seed, Workers: workers}))
		return [32]byte(h.Sum(nil))
	}
	a := hash(1, 1, gguf.TypeF16)
	assert.Equal(t, a, hash(1, 3, gguf.TypeF16), "the number of workers does not matter")
	assert.Equal(t, a, hash(1, 0, gguf.TypeF16))
	assert.NotEqual(t, a, hash(2, 2, gguf.TypeF16), "the seed matters")
	assert.Equal(t, hash(3, 1, gguf.TypeQ8_0), hash(3, 4, gguf.TypeQ8_0))

	// Chunks of one tensor use different streams.
	x := make([]float32, 64)
	y := make([]float32, 64)
	fillNormal(x, chunkSeed(1, 0, 0), 1)
	fillNormal(y, chunkSeed(1, 0, 1), 1)
	assert.NotEqual(t, x, y)
}

func TestSynthErrors(t *testing.T) {
	vocab := vocabFor(t, "mistral-tiny")
	for _, tc := range []struct {
		opts Options
		msg  string
	}{
		{Options{Shape: "nope", VocabPath: vocab}, `unknown shape "nope"`},
		{Options{Shape: "mistral-tiny"}, "VocabPath is required"},
		{Options{Shape: "mistral-tiny", VocabPath: vocab, Type: gguf.TypeQ4_0}, "not supported"},
		{Options{Shape: "mistral-tiny", VocabPath: filepath.Join(t.TempDir(), "none.gguf")}, "reading vocab"},
	} {
		err := Write(io.Discard, tc.opts)
		if assert.Error(t, err, tc.msg) {
			assert.Contains(t, err.Error(), tc.msg)
			assert.Regexp(t, "^synth: ", err.Error())
		}
	}

	// A vocab without tokens.
	noTok := filepath.Join(t.TempDir(), "notok.gguf")
	var buf bytes.Buffer
	w, err := gguf.NewWriter(&buf, []gguf.KV{{Key: "general.architecture", Value: gguf.String("llama")}}, nil)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	require.NoError(t, os.WriteFile(noTok, buf.Bytes(), 0o644))
	err = WriteFile(filepath.Join(t.TempDir(), "out.gguf"), Options{Shape: "mistral-tiny", VocabPath: noTok})
	assert.ErrorIs(t, err, gguf.ErrKeyNotFound)

	// Failed writes leave no file behind.
	dir := t.TempDir()
	err = WriteFile(filepath.Join(dir, "x.gguf"), Options{Shape: "nope", VocabPath: vocab})
	assert.Error(t, err)
	entries, _ := filepath.Glob(filepath.Join(dir, "*"))
	assert.Empty(t, entries)

	// Write errors propagate and stop the generators.
	err = Write(&failWriter{n: 2 << 20}, Options{Shape: "mistral-tiny", VocabPath: vocab, Type: gguf.TypeF32})
	assert.ErrorContains(t, err, "disk full")
}

type failWriter struct{ n int }

func (w *failWriter) Write(p []byte) (int, error) {
	if len(p) > w.n {
		return w.n, fmt.Errorf("disk full")
	}
	w.n -= len(p)
	return len(p), nil
}

func TestSynthBert(t *testing.T) {
	for _, shape := range []string{"bert-tiny", "bert-rerank-tiny"} {
		t.Run(shape, func(t *testing.T) {
			s, err := ShapeByName(shape)
			require.NoError(t, err)
			vocab := vocabFor(t, shape)
			p := filepath.Join(t.TempDir(), "model.gguf")
			require.NoError(t, WriteFile(p, Options{Shape: shape, VocabPath: vocab, Type: gguf.TypeF16, Seed: 7}))
			f, err := gguf.Open(p)
			require.NoError(t, err)
			defer f.Close()
			arch, err := f.String("general.architecture")
			require.NoError(t, err)
			assert.Equal(t, "bert", arch)
			for key, want := range map[string]int{
				"context_length": s.Ctx, "embedding_length": s.Embd, "block_count": s.Layers,
				"feed_forward_length": s.FF, "attention.head_count": s.Heads,
			} {
				got, err := f.Uint32("bert." + key)
				if assert.NoError(t, err, key) {
					assert.Equal(t, want, int(got), key)
				}
			}
			eps, err := f.Float32("bert.attention.layer_norm_epsilon")
			assert.NoError(t, err)
			assert.Equal(t, s.RMSEps, eps)
			causal, ok := f.Lookup("bert.attention.causal")
			if assert.True(t, ok) {
				assert.Equal(t, gguf.Bool(false), causal)
			}
			pooling, err := f.Uint32("bert.pooling_type")
			assert.NoError(t, err)
			assert.Equal(t, poolingTypes[s.Pooling], pooling)
			types, err := f.Uint32("tokenizer.ggml.token_type_count")
			assert.NoError(t, err)
			nVocab := vocabSizes["bert-bge"]

			shapes := map[string][]int64{
				"token_embd.weight":              {64, int64(nVocab)},
				"token_types.weight":             {64, int64(types)},
				"position_embd.weight":           {64, 512},
				"token_embd_norm.weight":         {64},
				"token_embd_norm.bias":           {64},
				"blk.1.attn_q.weight":            {64, 64},
				"blk.1.attn_k.bias":              {64},
				"blk.1.attn_output.weight":       {64, 64},
				"blk.1.attn_output_norm.bias":    {64},
				"blk.1.ffn_up.weight":            {64, 256},
				"blk.1.ffn_up.bias":              {256},
				"blk.1.ffn_down.weight":          {256, 64},
				"blk.1.ffn_down.bias":            {64},
				"blk.1.layer_output_norm.weight": {64},
			}
			if s.Pooling == "rank" {
				shapes["cls.weight"] = []int64{64, 64}
				shapes["cls.output.weight"] = []int64{64, 1}
				shapes["cls.output.bias"] = []int64{1}
			} else {
				_, has := f.Tensor("cls.output.weight")
				assert.False(t, has, "only rerankers have a classification head")
			}
			for name, shape := range shapes {
				ti, ok := f.Tensor(name)
				if assert.True(t, ok, name) {
					assert.Equal(t, shape, ti.Shape, name)
					if len(shape) == 1 || name == "token_types.weight" {
						assert.Equal(t, gguf.TypeF32, ti.Type, name)
					} else {
						assert.Equal(t, gguf.TypeF16, ti.Type, name)
					}
				}
			}
			n, err := s.Params(nVocab)
			require.NoError(t, err)
			var total int64
			for _, ti := range f.Tensors {
				total += ti.Elements()
			}
			assert.Equal(t, n, total)
		})
	}

	bad, err := ShapeByName("bert-tiny")
	require.NoError(t, err)
	bad.Pooling = "max"
	assert.ErrorContains(t, bad.Validate(), "unknown pooling type")
	bad.Pooling, bad.HeadsKV = "cls", 2
	assert.ErrorContains(t, bad.Validate(), "grouped-query")
	dec, err := ShapeByName("llama-tiny")
	require.NoError(t, err)
	dec.Pooling = "mean"
	assert.ErrorContains(t, dec.Validate(), "only bert shapes")
}

// vocabFor is the path of a shape's default vocabulary in llama.cpp's models directory.
func vocabFor(t testing.TB, shape string) string {
	t.Helper()
	s, err := ShapeByName(shape)
	require.NoError(t, err)
	p, err := llamacpp.Model(s.VocabFile())
	require.NoError(t, err)
	require.FileExists(t, p)
	return p
}
