package main

import (
	"fmt"
	"io"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/llamago/llamago/internal/llamacpp"
	"github.com/llamago/llamago/llama"
	"github.com/llamago/llamago/llama/gguf"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The demo model's chat template makes the conversation the text to continue.
func TestChatTemplate(t *testing.T) {
	tmpl, err := llama.NewChatTemplate(nil, &llama.ChatTemplateParams{Source: ChatTemplate, BOS: "<s>", EOS: "</s>"})
	require.NoError(t, err)
	defer tmpl.Close()
	jinja, err := tmpl.Jinja()
	require.NoError(t, err)
	assert.True(t, jinja)

	p, err := tmpl.Apply(&llama.ChatRequest{Messages: []llama.Message{
		{Role: llama.RoleSystem, Content: "A Psalm of David."},
		{Role: llama.RoleUser, Content: "The LORD is my shepherd;"},
	}})
	require.NoError(t, err)
	assert.Equal(t, "A Psalm of David. The LORD is my shepherd;", p.Prompt)

	p, err = tmpl.Apply(&llama.ChatRequest{Messages: []llama.Message{
		{Role: llama.RoleUser, Content: "The LORD is my shepherd;"},
		{Role: llama.RoleAssistant, Content: " I shall not want."},
		{Role: llama.RoleUser, Content: "He restoreth my soul:"},
	}})
	require.NoError(t, err)
	assert.Equal(t, "The LORD is my shepherd; I shall not want. He restoreth my soul:", p.Prompt)
}

// tinyWeights is a random model in train.py's export format (PyTorch shapes, f32) with
// the Llama SPM vocabulary's 32,000 tokens and 32 dims: small enough to export and
// decode in milliseconds.
func tinyWeights(t *testing.T, nCheck int) (*Index, []byte) {
	t.Helper()
	const vocab, dim, ffn = 32000, 32, 64
	idx := &Index{Format: "llamago-kjv-demo-weights/1", Parameters: 1}
	c := &idx.Config
	c.Vocab, c.Dim, c.Layers, c.Heads, c.KVHeads, c.FFN, c.Ctx, c.RopeBase, c.Eps = vocab, dim, 1, 2, 2, ffn, 64, 10000, 1e-5
	rng := rand.New(rand.NewPCG(1, 2))
	var data []byte
	add := func(name string, scale float32, shape ...int64) Blob {
		n := int64(1)
		for _, d := range shape {
			n *= d
		}
		v := make([]float32, n)
		for i := range v {
			if scale == 0 {
				v[i] = 1 // norms
			} else {
				v[i] = scale * float32(rng.NormFloat64())
			}
		}
		b, err := gguf.Encode(nil, gguf.TypeF32, v)
		require.NoError(t, err)
		blob := Blob{Name: name, Shape: shape, DType: "f32", Offset: int64(len(data)), NBytes: int64(len(b))}
		data = append(data, b...)
		return blob
	}
	idx.Tensors = append(idx.Tensors, add("token_embd.weight", 1, vocab, dim))
	for _, m := range []struct {
		name  string
		scale float32
		shape []int64
	}{
		{"attn_norm.weight", 0, []int64{dim}}, {"attn_q.weight", 0.2, []int64{dim, dim}},
		{"attn_k.weight", 0.2, []int64{dim, dim}}, {"attn_v.weight", 0.2, []int64{dim, dim}},
		{"attn_output.weight", 0.2, []int64{dim, dim}}, {"ffn_norm.weight", 0, []int64{dim}},
		{"ffn_gate.weight", 0.2, []int64{ffn, dim}}, {"ffn_up.weight", 0.2, []int64{ffn, dim}},
		{"ffn_down.weight", 0.2, []int64{dim, ffn}},
	} {
		idx.Tensors = append(idx.Tensors, add("blk.0."+m.name, m.scale, m.shape...))
	}
	idx.Tensors = append(idx.Tensors, add("output_norm.weight", 0, dim))
	for i := range nCheck {
		idx.Check.Tokens = append(idx.Check.Tokens, int32(1+97*i))
	}
	idx.Check.Logits = add("check", 1, int64(nCheck), vocab)
	return idx, data
}

// With -suppress-bos the GGUF carries output.weight, token_embd.weight with the BOS row
// zero: llama.cpp's BOS logit is exactly 0 and every other logit is the tied model's.
func TestExportSuppressesBOS(t *testing.T) {
	vocab, err := llamacpp.Model("ggml-vocab-llama-spm.gguf")
	require.NoError(t, err)
	idx, data := tinyWeights(t, 4)
	dir := t.TempDir()
	export := func(suppress bool) (string, []gguf.KV) {
		meta, err := Metadata(idx, data, vocab, gguf.TypeQ8_0, suppress)
		require.NoError(t, err)
		path := filepath.Join(dir, fmt.Sprintf("suppress-%v.gguf", suppress))
		require.NoError(t, WriteGGUF(path, idx, data, meta, gguf.TypeQ8_0, suppress))
		return path, meta
	}
	tied, _ := export(false)
	untied, meta := export(true)
	bos, err := BOSToken(meta)
	require.NoError(t, err)
	require.Equal(t, int32(1), bos)

	f, err := gguf.Open(untied)
	require.NoError(t, err)
	defer f.Close()
	ok, err := f.Bool("llamago.demo.bos_suppressed")
	require.NoError(t, err)
	assert.True(t, ok)
	desc, err := f.String("general.description")
	require.NoError(t, err)
	assert.Contains(t, desc, "BOS row (token 1) zero")
	tensor := func(name string) []float32 {
		ti, ok := f.Tensor(name)
		require.True(t, ok, name)
		assert.Equal(t, gguf.TypeQ8_0, ti.Type, name)
		r, err := f.TensorData(name)
		require.NoError(t, err)
		b, err := io.ReadAll(r)
		require.NoError(t, err)
		v, err := gguf.Decode(nil, ti.Type, b)
		require.NoError(t, err)
		return v
	}
	embd, out := tensor("token_embd.weight"), tensor("output.weight")
	require.Len(t, out, len(embd))
	dim := idx.Config.Dim
	for i := range out {
		if i/dim == int(bos) {
			require.Zero(t, out[i], "output.weight[%d]: the BOS row", i)
		} else {
			require.Equal(t, embd[i], out[i], "output.weight[%d]", i)
		}
	}
	tf, err := gguf.Open(tied)
	require.NoError(t, err)
	_, has := tf.Tensor("output.weight")
	assert.False(t, has, "without suppression the output projection stays tied")
	require.NoError(t, tf.Close())

	// llama.cpp: the BOS logit is 0, the others are the tied model's, bit for bit.
	tokens := idx.Check.Tokens
	ref, err := Logits(t.Context(), tied, tokens, 1)
	require.NoError(t, err)
	d, err := CompareLogits(t.Context(), untied, tokens, ref, 1, int(bos))
	require.NoError(t, err)
	assert.Zero(t, d.SkipMaxAbs, "llama.cpp's BOS logit")
	assert.NotZero(t, d.SkipRefMax-d.SkipRefMin, "the tied model's BOS logit varies")
	assert.Zero(t, d.MaxAbs, "the other logits")
	assert.Equal(t, len(tokens), d.TopAgree)
	assert.Positive(t, d.MaxRef)
}
