// Package llamacpp finds the fetched llama.cpp tree, whose models/ holds the vocabularies
// and chat templates that tools and tests read.
package llamacpp

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Dir is LLAMA_CPP_DIR, or third_party/llama.cpp of the repository holding the working
// directory (materialised by `make deps`).
func Dir() (string, error) {
	if d := os.Getenv("LLAMA_CPP_DIR"); d != "" {
		return d, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, "third_party", "llama.cpp")
		if _, err := os.Stat(filepath.Join(p, "models")); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("llama.cpp tree not found: run `make deps` in the repository or set LLAMA_CPP_DIR")
		}
		dir = parent
	}
}

// Model is the path of models/<name> in the llama.cpp tree (not checked to exist).
func Model(name string) (string, error) {
	dir, err := Dir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "models", name), nil
}

// Tool is the path of llama.cpp's program name built beside the archives of backend
// (third_party/build/<backend>/bin, named in LLAMA_TOOLS of scripts/build-llama.sh), in
// the repository holding the working directory.
func Tool(backend, name string) (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, "third_party", "build", backend, "bin", name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("%s is not built: LLAMA_TOOLS=%s bash scripts/build-llama.sh %s", name, name, backend)
		}
		dir = parent
	}
}
