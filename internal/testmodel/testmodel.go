// Package testmodel writes the synthetic models (random weights, a real vocabulary
// from llama.cpp's models/ directory) that tests outside package llama run on.
package testmodel

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

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
	s, err := gguf.ShapeByName(shape)
	if err != nil {
		t.Fatal(err)
	}
	written.Lock()
	defer written.Unlock()
	key := fmt.Sprintf("%s-%v", shape, typ)
	if p, ok := written.paths[key]; ok {
		return p
	}
	if written.dir == "" {
		if written.dir, err = os.MkdirTemp("", "llamago-test-models-"); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(written.dir, key+".gguf")
	if err := gguf.WriteSyntheticFile(p, gguf.SynthOptions{Shape: shape, VocabPath: VocabPath(t, s.Vocab), Type: typ, Seed: 42}); err != nil {
		t.Fatal(err)
	}
	written.paths[key] = p
	return p
}

// VocabPath is llama.cpp's vocab-only GGUF of the given name (e.g. "qwen2"), from
// LLAMA_CPP_DIR or the repository's third_party/llama.cpp (made by `make deps`).
func VocabPath(t testing.TB, name string) string {
	t.Helper()
	dir := os.Getenv("LLAMA_CPP_DIR")
	if dir == "" {
		_, file, _, _ := runtime.Caller(0)
		dir = filepath.Join(filepath.Dir(file), "..", "..", "third_party", "llama.cpp")
	}
	p := filepath.Join(dir, "models", "ggml-vocab-"+name+".gguf")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("vocabulary %s: %v (run `make deps` or set LLAMA_CPP_DIR)", name, err)
	}
	return p
}
