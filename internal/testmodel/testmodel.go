// Package testmodel writes the synthetic models (random weights, a real vocabulary
// from llama.cpp's models/ directory) that tests outside package llama run on.
package testmodel

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/llamago/llamago/internal/llamacpp"
	"github.com/llamago/llamago/internal/synth"
	"github.com/llamago/llamago/llama/gguf"
)

var written = struct {
	sync.Mutex
	dir   string
	paths map[string]string
}{paths: map[string]string{}}

// Main runs a test binary's tests and removes the models they wrote: call it from
// TestMain as os.Exit(testmodel.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	written.Lock()
	defer written.Unlock()
	if written.dir != "" {
		os.RemoveAll(written.dir)
	}
	return code
}

// Path returns a model of the named shape (see package gguf) and weight type, written
// once per test process.
func Path(t testing.TB, shape string, typ gguf.TensorType) string {
	t.Helper()
	s, err := synth.ShapeByName(shape)
	if err != nil {
		t.Fatal(err)
	}
	written.Lock()
	defer written.Unlock()
	key := fmt.Sprintf("%s-%v", shape, typ)
	if p, ok := written.paths[key]; ok {
		return p
	}
	p := filepath.Join(dirLocked(t), key+".gguf")
	if err := synth.WriteFile(p, synth.Options{Shape: shape, VocabPath: VocabPath(t, s.Vocab), Type: typ, Seed: 42}); err != nil {
		t.Fatal(err)
	}
	written.paths[key] = p
	return p
}

// Dir is the directory of this test process's models, for files a test writes beside
// them; Main removes it.
func Dir(t testing.TB) string {
	t.Helper()
	written.Lock()
	defer written.Unlock()
	return dirLocked(t)
}

func dirLocked(t testing.TB) string {
	if written.dir == "" {
		dir, err := os.MkdirTemp("", "llamago-test-models-")
		if err != nil {
			t.Fatal(err)
		}
		written.dir = dir
	}
	return written.dir
}

// VocabPath is llama.cpp's vocab-only GGUF of the given name (e.g. "qwen2"), from
// LLAMA_CPP_DIR or the repository's third_party/llama.cpp (made by `make deps`).
func VocabPath(t testing.TB, name string) string {
	t.Helper()
	p, err := llamacpp.Model("ggml-vocab-" + name + ".gguf")
	if err == nil {
		_, err = os.Stat(p)
	}
	if err != nil {
		t.Fatalf("vocabulary %s: %v (run `make deps` or set LLAMA_CPP_DIR)", name, err)
	}
	return p
}

// ProjectorPair writes a synthetic multimodal projector of type typ (synth.Projector*, with
// its defaults) and the language model it pairs with (F16 random weights of seed, the
// Qwen2 vocabulary) into a temporary directory of t.
func ProjectorPair(t testing.TB, typ string, seed uint64) (model, projector string) {
	t.Helper()
	opts, err := synth.DefaultProjector(typ)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	model, projector = filepath.Join(dir, "llm.gguf"), filepath.Join(dir, "mmproj.gguf")
	if err := synth.WriteTextFile(model, opts, synth.Options{VocabPath: VocabPath(t, "qwen2"), Type: gguf.TypeF16, Seed: seed}); err != nil {
		t.Fatal(err)
	}
	if err := synth.WriteProjectorFile(projector, opts); err != nil {
		t.Fatal(err)
	}
	return model, projector
}

// MediaFile is a file of llama.cpp's tools/mtmd: test-1.jpeg (an image), test-2.mp3 (speech).
func MediaFile(t testing.TB, name string) string {
	t.Helper()
	dir, err := llamacpp.Dir()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "tools", "mtmd", name)
}

// LoRA writes a random rank-4 LoRA adapter (alpha 4) of the first attention query weight
// of the model at path into a temporary directory of t and returns its path: large enough
// that a scale of a few changes the model's output.
func LoRA(t testing.TB, path string) string {
	t.Helper()
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const target, rank = "blk.0.attn_q.weight", 4
	ti, ok := f.Tensor(target)
	arch, err := f.String("general.architecture")
	if !ok || err != nil {
		t.Fatalf("%s: no %s or architecture (%v)", path, target, err)
	}
	in, out := ti.Shape[0], ti.Shape[1]
	rng := rand.New(rand.NewPCG(1, 2))
	random := func(n int64) []byte {
		b := make([]byte, 4*n)
		for i := range n {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(float32(rng.NormFloat64())))
		}
		return b
	}
	lora := filepath.Join(t.TempDir(), "lora.gguf")
	file, err := os.Create(lora)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	w, err := gguf.NewWriter(file, []gguf.KV{
		{Key: "general.architecture", Value: gguf.String(arch)},
		{Key: "general.type", Value: gguf.String("adapter")},
		{Key: "adapter.type", Value: gguf.String("lora")},
		{Key: "adapter.lora.alpha", Value: gguf.Float32(rank)},
	}, []gguf.TensorInfo{
		{Name: target + ".lora_a", Type: gguf.TypeF32, Shape: []int64{in, rank}},
		{Name: target + ".lora_b", Type: gguf.TypeF32, Shape: []int64{rank, out}},
	})
	if err == nil {
		err = w.WriteTensor(target+".lora_a", random(in*rank))
	}
	if err == nil {
		err = w.WriteTensor(target+".lora_b", random(rank*out))
	}
	if err == nil {
		err = w.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	return lora
}
