// Package modelfile finds the model file an example runs on: the one the user named,
// the repository's demo model (models/kjv-demo.gguf, a small model trained on the King
// James Bible by scripts/train-demo-model), or a synthetic model (random weights, a real
// vocabulary from llama.cpp's models/ directory) written once into a cache directory.
package modelfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/llamago/llamago/internal/llamacpp"
	"github.com/llamago/llamago/internal/synth"
	"github.com/llamago/llamago/llama/gguf"
)

// Demo is the demo model's path inside the repository.
const Demo = "models/kjv-demo.gguf"

// DemoPath returns the path of the demo model: $LLAMAGO_DEMO_MODEL when set, else
// models/kjv-demo.gguf of the repository holding the working directory. It fails when
// the file does not exist.
func DemoPath() (string, error) {
	if p := os.Getenv("LLAMAGO_DEMO_MODEL"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("demo model: %w", err)
		}
		return p, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, filepath.FromSlash(Demo))
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("demo model " + Demo + " not found above the working directory")
		}
		dir = parent
	}
}

// Synthetic is the -model prefix that asks for a synthetic model by shape
// ("synthetic:qwen2-0.5b"): random weights, for benchmarks and tests, never a fallback.
const Synthetic = "synthetic:"

// ResolveDefault returns path when set ("synthetic:SHAPE": that synthetic model, with
// weights of the given type, see Resolve); otherwise the demo model. Without either it
// fails, saying how to name a model: random weights would answer gibberish as if real.
func ResolveDefault(path string, weights gguf.TensorType) (string, error) {
	if shape, ok := strings.CutPrefix(path, Synthetic); ok {
		return Resolve("", shape, weights)
	}
	if path != "" {
		return path, nil
	}
	demo, err := DemoPath()
	if err != nil {
		return "", fmt.Errorf("no model: name a GGUF file with -model FILE (the default, the demo model %s, "+
			"is used inside a llamago checkout, or where $LLAMAGO_DEMO_MODEL points; "+
			"-model %sqwen2-0.5b writes a random-weight model for benchmarks): %w", Demo, Synthetic, err)
	}
	return demo, nil
}

// Resolve returns path when set; otherwise the path of the synthetic model of the
// given shape and weight type, writing it first if it is not cached yet.
func Resolve(path, shape string, weights gguf.TensorType) (string, error) {
	if path != "" {
		return path, nil
	}
	s, err := synth.ShapeByName(shape)
	if err != nil {
		return "", err
	}
	dir, err := CacheDir()
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, fmt.Sprintf("synthetic-%s-%s.gguf", shape, strings.ToLower(weights.String())))
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	vocab, err := VocabPath(s.Vocab)
	if err != nil {
		return "", err
	}
	fmt.Fprintf(os.Stderr, "writing a synthetic %s model (random weights, %s vocabulary) to %s\n", shape, s.Vocab, out)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if err := synth.WriteFile(out, synth.Options{Shape: shape, VocabPath: vocab, Type: weights, Seed: 1}); err != nil {
		return "", err
	}
	return out, nil
}

// CacheDir is where synthetic models are kept: $LLAMAGO_CACHE/models, else the user
// cache directory's llamago/models.
func CacheDir() (string, error) {
	if d := os.Getenv("LLAMAGO_CACHE"); d != "" {
		return filepath.Join(d, "models"), nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(d, "llamago", "models"), nil
}

// VocabPath is the path of llama.cpp's vocab-only GGUF of the given name (e.g. "qwen2").
func VocabPath(name string) (string, error) {
	dir, err := LlamaCppDir()
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, "models", "ggml-vocab-"+name+".gguf")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("vocabulary %s: %w", name, err)
	}
	return p, nil
}

// LlamaCppDir is the fetched llama.cpp tree (see package llamacpp).
func LlamaCppDir() (string, error) { return llamacpp.Dir() }
