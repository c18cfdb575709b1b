package modelcheck

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/llamago/llamago/llama/gguf"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// file writes a small llama-architecture GGUF file whose metadata edit may change, with
// one F32 tensor, and returns its bytes.
func file(t *testing.T, edit func(map[string]gguf.Value)) []byte {
	t.Helper()
	meta := map[string]gguf.Value{
		"general.architecture":                   gguf.String("llama"),
		"llama.block_count":                      gguf.Uint32(2),
		"llama.embedding_length":                 gguf.Uint32(64),
		"llama.attention.head_count":             gguf.Uint32(4),
		"llama.attention.layer_norm_rms_epsilon": gguf.Float32(1e-5),
		"tokenizer.ggml.model":                   gguf.String("gpt2"),
		"tokenizer.ggml.tokens":                  gguf.Array([]string{"a", "b", "c", "d"}),
		"tokenizer.ggml.bos_token_id":            gguf.Uint32(0),
	}
	if edit != nil {
		edit(meta)
	}
	var kvs []gguf.KV
	for k, v := range meta {
		kvs = append(kvs, gguf.KV{Key: k, Value: v})
	}
	var buf bytes.Buffer
	w, err := gguf.NewWriter(&buf, kvs, []gguf.TensorInfo{{Name: "w", Type: gguf.TypeF32, Shape: []int64{8}}})
	require.NoError(t, err)
	require.NoError(t, w.WriteTensor("w", make([]byte, 32)))
	require.NoError(t, w.Close())
	return buf.Bytes()
}

func read(t *testing.T, edit func(map[string]gguf.Value), vocabOnly bool) (Facts, error) {
	b := file(t, edit)
	return Read(bytes.NewReader(b), int64(len(b)), vocabOnly)
}

func set(kv ...any) func(map[string]gguf.Value) {
	return func(m map[string]gguf.Value) {
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1].(gguf.Value)
		}
	}
}

// TestRead: what llama.cpp's loader would abort on is refused with a message naming the key.
func TestRead(t *testing.T) {
	a := "llama."
	for name, tc := range map[string]struct {
		edit func(map[string]gguf.Value)
		want string
	}{
		"block_count 0":            {set(a+"block_count", gguf.Uint32(0)), "block_count = 0: llama.cpp supports 1 to 512 layers"},
		"block_count 100000":       {set(a+"block_count", gguf.Uint32(100000)), "supports 1 to 512"},
		"block_count as a string":  {set(a+"block_count", gguf.String("2")), "llama.block_count"},
		"nextn beyond the layers":  {set(a+"nextn_predict_layers", gguf.Uint32(3)), "nextn_predict_layers = 3 exceeds block_count 2"},
		"too many experts":         {set(a+"expert_count", gguf.Uint32(2000), a+"expert_used_count", gguf.Uint32(1)), "at most 1024 experts"},
		"more used than experts":   {set(a+"expert_count", gguf.Uint32(2), a+"expert_used_count", gguf.Uint32(4)), "expert_used_count = 4 exceeds expert_count 2"},
		"experts, none used":       {set(a+"expert_count", gguf.Uint32(4)), "with no expert_used_count"},
		"unknown rope scaling":     {set(a+"rope.scaling.type", gguf.String("sideways")), "rope.scaling.type"},
		"NaN epsilon":              {set(a+"attention.layer_norm_rms_epsilon", gguf.Float32(float32(math.NaN()))), "must be finite"},
		"duplicate token":          {set("tokenizer.ggml.tokens", gguf.Array([]string{"a", "b", "a", "d"})), `"a" twice (ids 0 and 2)`},
		"duplicate up to a NUL":    {set("tokenizer.ggml.tokens", gguf.Array([]string{"a", "b\x00x", "b", "d"})), `"b" twice`},
		"empty like a placeholder": {set("tokenizer.ggml.tokens", gguf.Array([]string{"a", "", "[EMPTY_1]", "d"})), "twice"},
		"bos outside":              {set("tokenizer.ggml.bos_token_id", gguf.Uint32(4)), "bos_token_id = 4 is outside the vocabulary of 4 tokens"},
		"tokenizer model a number": {set("tokenizer.ggml.model", gguf.Uint32(1)), "tokenizer.ggml.model"},
		"second file of a split":   {set("split.count", gguf.Uint16(2), "split.no", gguf.Uint16(1)), "file 2 of a model split in 2: load the first one"},
		"split count as uint32":    {set("split.count", gguf.Uint32(2)), "split.count"},
	} {
		_, err := read(t, tc.edit, false)
		if assert.Error(t, err, name) {
			assert.Contains(t, err.Error(), tc.want, name)
		}
	}

	// Tokenizer keys are checked for vocabulary-only loads too; the rest is not.
	_, err := read(t, set("tokenizer.ggml.tokens", gguf.Array([]string{"a", "a"})), true)
	assert.ErrorContains(t, err, "twice")
	_, err = read(t, set(a+"block_count", gguf.Uint32(0)), true)
	assert.NoError(t, err)

	facts, err := read(t, set(a+"pooling_type", gguf.Uint32(2)), false)
	require.NoError(t, err)
	assert.Equal(t, Facts{HeadDim: 16, Pooling: 2}, facts)
	facts, err = read(t, set(a+"attention.key_length", gguf.Uint32(32)), false)
	require.NoError(t, err)
	assert.Equal(t, 32, facts.HeadDim)
}

// TestFile: paths that are no model file, misaligned tensor data and split sets.
func TestFile(t *testing.T) {
	dir := t.TempDir()
	_, err := File("", false)
	assert.ErrorContains(t, err, "empty path")
	_, err = File(dir, false)
	assert.ErrorContains(t, err, "is a directory")
	_, err = File(filepath.Join(dir, "missing.gguf"), false)
	assert.ErrorIs(t, err, os.ErrNotExist)

	// general.alignment 1 lets tensor data start anywhere; ggml maps only multiples of 32.
	for pad := range 32 {
		b := file(t, set("general.alignment", gguf.Uint32(1), "x.pad", gguf.String(string(make([]byte, pad)))))
		f, err := gguf.Read(bytes.NewReader(b), int64(len(b)))
		require.NoError(t, err)
		if f.DataOffset%32 == 0 {
			continue
		}
		p := filepath.Join(dir, "misaligned.gguf")
		require.NoError(t, os.WriteFile(p, b, 0o644))
		_, err = File(p, false)
		assert.ErrorContains(t, err, "is not a multiple of 32")
		_, err = File(p, true)
		assert.NoError(t, err, "the vocabulary of such a file loads")
		assert.ErrorContains(t, Adapter(p), "is not a multiple of 32")
		break
	}

	// A split set: the first file names the others, each checked.
	write := func(name string, edit func(map[string]gguf.Value)) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, file(t, edit), 0o644))
		return p
	}
	first := write("m-00001-of-00002.gguf", set("split.count", gguf.Uint16(2), "split.no", gguf.Uint16(0)))
	_, err = File(first, false)
	assert.ErrorIs(t, err, os.ErrNotExist, "second file missing")
	write("m-00002-of-00002.gguf", set("split.count", gguf.Uint16(2), "split.no", gguf.Uint32(1)))
	_, err = File(first, false)
	assert.ErrorContains(t, err, "split.no")
	write("m-00002-of-00002.gguf", set("split.count", gguf.Uint16(2), "split.no", gguf.Uint16(1)))
	facts, err := File(first, false)
	require.NoError(t, err)
	assert.Equal(t, 2, facts.Splits)
	renamed := write("m.gguf", set("split.count", gguf.Uint16(2), "split.no", gguf.Uint16(0)))
	_, err = File(renamed, false)
	assert.ErrorContains(t, err, "must be named *-00001-of-00002.gguf")
}
