package hub

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseRef(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want Ref
	}{
		{"ggml-org/gemma-3-1b-it-GGUF", Ref{Repo: "ggml-org/gemma-3-1b-it-GGUF"}},
		{"ggml-org/gemma-3-1b-it-GGUF:Q4_K_M", Ref{Repo: "ggml-org/gemma-3-1b-it-GGUF", Quant: "Q4_K_M"}},
		{"unsloth/Qwen3.5-9B-GGUF:ud-q4_k_xl", Ref{Repo: "unsloth/Qwen3.5-9B-GGUF", Quant: "ud-q4_k_xl"}},
		{"a_b/c_d", Ref{Repo: "a_b/c_d"}},
	} {
		got, err := ParseRef(tc.in)
		require.NoError(t, err, tc.in)
		assert.Equal(t, tc.want, got, tc.in)
		assert.Equal(t, tc.in, got.String())
	}
}

func TestParseRefRejects(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, msg string }{
		{"", "empty"},
		{"gemma", "missing '/'"},
		{"/repo", "empty user"},
		{"user/", "empty repository name"},
		{"a/b/c", "more than one '/'"},
		{"user/repo:", "empty quant"},
		{"user/repo:Q4:Q8", "more than one ':'"},
		{"user/..", "'..' is not allowed"},
		{"../repo", "'..' is not allowed"},
		{"user/re po", `character ' ' is not allowed`},
		{"user/repo?x", `character '?' is not allowed`},
		{"user/-repo", "must sit between"},
		{"user/repo.", "must sit between"},
		{"user/re--po", "must sit between"},
		{"user/repo:Q4 K", "not allowed in a quant tag"},
		{"user/repo:Q4/K", "not allowed in a quant tag"},
		{"user/" + strings.Repeat("x", 260), "longer than 256"},
	} {
		_, err := ParseRef(tc.in)
		require.Error(t, err, tc.in)
		assert.ErrorIs(t, err, ErrInvalidRef, tc.in)
		assert.Contains(t, err.Error(), tc.msg, tc.in)
		assert.Contains(t, err.Error(), "<user>/<repo>[:quant]", "the message shows the syntax")
	}
}

func TestGGUFNames(t *testing.T) {
	t.Parallel()
	s, ok := ggufSplitInfo("dir/Model-Q4_K_M-00002-of-00005.gguf")
	require.True(t, ok)
	assert.Equal(t, splitInfo{prefix: "dir/Model-Q4_K_M", tag: "Q4_K_M", index: 2, count: 5}, s)
	assert.Equal(t, "dir/Model-Q4_K_M-00003-of-00005.gguf", s.partName(3))

	s, ok = ggufSplitInfo("model.q8_0.gguf")
	require.True(t, ok)
	assert.Equal(t, splitInfo{prefix: "model.q8_0", tag: "Q8_0", index: 1, count: 1}, s)

	_, ok = ggufSplitInfo("model.bin")
	assert.False(t, ok)

	for p, want := range map[string]bool{
		"m-Q4_K_M.gguf":            true,
		"sub/m-F16.gguf":           true,
		"mmproj-m-F16.gguf":        false,
		"m-mmproj-f16.gguf":        false,
		"imatrix.gguf":             false,
		"mtp-m-Q8_0.gguf":          false,
		"eagle3-m.gguf":            false,
		"dflash-m.gguf":            false,
		"dspark-m.gguf":            false,
		"mmproj-dir/m-Q4_0.gguf":   true, // only the file name counts, as in llama.cpp
		"m-Q4_K_M.gguf.part":       false,
		"README.md":                false,
		"m-Q4_K_M-00001-of-2.gguf": true,
	} {
		assert.Equal(t, want, isModelFile(p), p)
	}
}
