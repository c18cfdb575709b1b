package llama

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// llamaCppDir is the llama.cpp tree the tests read vocabularies from: LLAMA_CPP_DIR or
// third_party/llama.cpp (materialised by make deps; CI always has it).
func llamaCppDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("LLAMA_CPP_DIR")
	if dir == "" {
		dir = filepath.Join("..", "third_party", "llama.cpp")
	}
	_, err := os.Stat(filepath.Join(dir, "models"))
	require.NoError(t, err, "llama.cpp models/ not found: run `make deps` or set LLAMA_CPP_DIR")
	return dir
}

func vocabPath(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(llamaCppDir(t), "models", "ggml-vocab-"+name+".gguf")
	_, err := os.Stat(p)
	require.NoError(t, err)
	return p
}
