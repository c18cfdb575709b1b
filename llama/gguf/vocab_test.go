package gguf

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestReadVocabs reads every vocab-only GGUF shipped with llama.cpp.
func TestReadVocabs(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join(modelsDir(t), "ggml-vocab-*.gguf"))
	require.NoError(t, err)
	require.NotEmpty(t, paths, "no vocab GGUFs in llama.cpp's models directory: run `make deps`")
	for _, p := range paths {
		t.Run(filepath.Base(p), func(t *testing.T) {
			f, err := Open(p)
			require.NoError(t, err)
			defer f.Close()
			assert.Contains(t, []uint32{2, 3}, f.Version)
			assert.Empty(t, f.Tensors, "vocab-only")
			arch, err := f.String("general.architecture")
			assert.NoError(t, err)
			assert.NotEmpty(t, arch)

			tokens, err := f.Strings("tokenizer.ggml.tokens")
			require.NoError(t, err)
			assert.NotEmpty(t, tokens)
			v, _ := f.Lookup("tokenizer.ggml.tokens")
			assert.Equal(t, len(tokens), v.Len())
			if scores, err := f.Float32s("tokenizer.ggml.scores"); err == nil {
				assert.Len(t, scores, len(tokens), "scores")
			} else {
				assert.ErrorIs(t, err, ErrKeyNotFound)
			}
			if types, err := f.Int32s("tokenizer.ggml.token_type"); err == nil {
				assert.Len(t, types, len(tokens), "token types")
			} else {
				assert.ErrorIs(t, err, ErrKeyNotFound)
			}
			if n, err := f.Uint32(arch + ".vocab_size"); err == nil {
				assert.LessOrEqual(t, int(n), len(tokens))
			}
			for _, key := range []string{"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"} {
				if id, err := f.Uint32(key); err == nil {
					assert.Less(t, int(id), len(tokens), key)
				}
			}
		})
	}
}
