package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/llamago/llamago/internal/synth"
	"github.com/llamago/llamago/llama/gguf"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// modelsDir finds llama.cpp's models like the command does; a missing
// directory fails the test (run make deps).
func modelsDir(t *testing.T) string {
	t.Helper()
	dir, err := defaultModelsDir()
	require.NoError(t, err)
	_, err = os.Stat(dir)
	require.NoError(t, err, "llama.cpp models directory %s is missing: run `make deps` (or set LLAMA_CPP_DIR)", dir)
	return dir
}

func runCmd(args ...string) (string, string, error) {
	var out, errOut bytes.Buffer
	err := run(args, &out, &errOut)
	return out.String(), errOut.String(), err
}

func TestSynthAndInspect(t *testing.T) {
	modelsDir(t)
	p := filepath.Join(t.TempDir(), "tiny.gguf")
	out, _, err := runCmd("synth", "-shape", "qwen2-tiny", "-type", "q8_0", "-seed", "3", "-o", p)
	require.NoError(t, err)
	assert.Contains(t, out, "wrote "+p)

	out, _, err = runCmd("inspect", p)
	require.NoError(t, err)
	for _, want := range []string{
		"version:     3",
		"tensors:     26",
		`general.architecture`, `"qwen2"`,
		"= 7 (MOSTLY_Q8_0)",
		`tokenizer.ggml.tokens`, `[array of 151936 string: "!", "\"", "#"`, ", ...]",
		"token_embd.weight", "[64 151936]", "q8_0",
		"blk.1.attn_v.bias",
		"parameters:   9.85 M (9847360)",
	} {
		assert.Contains(t, out, want)
	}

	// Flags may follow the file.
	out, _, err = runCmd("inspect", p, "-json")
	require.NoError(t, err)
	var rep struct {
		Version  int
		Metadata []struct {
			Key   string
			Type  string
			Elem  string `json:"elem_type"`
			Len   int
			Value any
			Head  []any
		}
		Tensors []struct {
			Name  string
			Shape []int64
		}
		Summary struct{ Parameters int64 }
	}
	require.NoError(t, json.Unmarshal([]byte(out), &rep))
	assert.Equal(t, 3, rep.Version)
	assert.Equal(t, int64(9847360), rep.Summary.Parameters)
	require.Len(t, rep.Tensors, 26)
	assert.Equal(t, []int64{64, 151936}, rep.Tensors[0].Shape)
	byKey := map[string]int{}
	for i, m := range rep.Metadata {
		byKey[m.Key] = i
	}
	tok := rep.Metadata[byKey["tokenizer.ggml.tokens"]]
	assert.Equal(t, "string", tok.Elem)
	assert.Equal(t, 151936, tok.Len)
	assert.Len(t, tok.Head, headElems)
	assert.Nil(t, tok.Value)
	assert.Equal(t, 1e6, rep.Metadata[byKey["qwen2.rope.freq_base"]].Value)

	out, _, err = runCmd("inspect", "-json", "-full", p)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal([]byte(out), &rep))
	assert.Len(t, rep.Metadata[byKey["tokenizer.ggml.tokens"]].Value, 151936)
}

func TestInspectAwkwardValues(t *testing.T) {
	p := filepath.Join(t.TempDir(), "odd.gguf")
	fh, err := os.Create(p)
	require.NoError(t, err)
	w, err := gguf.NewWriter(fh, []gguf.KV{
		{Key: "nan", Value: gguf.Float32(float32(nan()))},
		{Key: "floats", Value: gguf.Array([]float64{1.5, nan()})},
		{Key: "nested", Value: gguf.Array([]gguf.Value{gguf.Array([]int8{-1, 2})})},
		{Key: "long", Value: gguf.String(strings.Repeat("é", 200))},
	}, nil)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	require.NoError(t, fh.Close())

	out, _, err := runCmd("inspect", p)
	require.NoError(t, err)
	assert.Contains(t, out, "= NaN")
	assert.Contains(t, out, "[array of 2 float64: 1.5, NaN]")
	assert.Contains(t, out, "[array of 1 array: [array of 2 int8: -1, 2]]")
	assert.Contains(t, out, "... (400 bytes)")

	out, _, err = runCmd("inspect", "-json", p)
	require.NoError(t, err, "NaN must not break JSON")
	assert.True(t, json.Valid([]byte(out)))
	assert.Contains(t, out, `"NaN"`)
}

func nan() float64 { var z float64; return z / z }

func TestErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{nil, "missing command"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"inspect"}, "inspect takes one FILE"},
		{[]string{"inspect", "a", "b"}, "inspect takes one FILE"},
		{[]string{"inspect", filepath.Join(t.TempDir(), "missing.gguf")}, "no such file"},
		{[]string{"inspect", "../../llama/gguf/testdata/bad/huge-array-count.gguf"}, "cannot fit"},
		{[]string{"synth", "-shape", "llama-tiny"}, "synth needs -shape and -o"},
		{[]string{"synth", "-shape", "gpt-9", "-o", "x"}, `unknown shape "gpt-9"`},
		{[]string{"synth", "-shape", "llama-tiny", "-type", "q4_0", "-o", filepath.Join(t.TempDir(), "x"), "-vocab", "nope"}, "not supported"},
		{[]string{"synth", "-shape", "llama-tiny", "-type", "fp8", "-o", "x"}, `unknown tensor type "fp8"`},
		{[]string{"synth", "-shape", "llama-tiny", "-o", filepath.Join(t.TempDir(), "x"), "-vocab", "/nonexistent.gguf"}, "reading vocab"},
		{[]string{"synth", "-bogus"}, "flag provided but not defined"},
	} {
		_, _, err := runCmd(tc.args...)
		if assert.Error(t, err, "%q", tc.args) {
			assert.Contains(t, err.Error(), tc.msg, "%q", tc.args)
		}
	}
}

func TestList(t *testing.T) {
	out, _, err := runCmd("synth", "-list")
	require.NoError(t, err)
	for _, s := range synth.Shapes() {
		assert.Contains(t, out, s.Name)
	}
	out, _, err = runCmd("help")
	require.NoError(t, err)
	assert.Contains(t, out, "usage:")
}
