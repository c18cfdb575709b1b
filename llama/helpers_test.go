package llama

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/llamago/llamago/llama/gguf"

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

// synthModels caches the synthetic models written for this test process.
var synthModels = struct {
	sync.Mutex
	dir   string
	paths map[string]string
}{paths: map[string]string{}}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "llamago-test-models-")
	if err != nil {
		panic(err)
	}
	synthModels.dir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// synthModel returns the path of a random-weight model of a named shape (see package
// gguf) with the real vocabulary of its family, written once per test process.
func synthModel(t testing.TB, shape string, typ gguf.TensorType) string {
	t.Helper()
	s, err := gguf.ShapeByName(shape)
	require.NoError(t, err)
	synthModels.Lock()
	defer synthModels.Unlock()
	key := fmt.Sprintf("%s-%v", shape, typ)
	if p, ok := synthModels.paths[key]; ok {
		return p
	}
	p := filepath.Join(synthModels.dir, key+".gguf")
	require.NoError(t, gguf.WriteSyntheticFile(p, gguf.SynthOptions{
		Shape: shape, VocabPath: vocabPath(t, s.Vocab), Type: typ, Seed: 42,
	}))
	synthModels.paths[key] = p
	return p
}

// loadTiny loads the llama-tiny model on the CPU and closes it when the test ends.
func loadTiny(t testing.TB) *Model {
	t.Helper()
	m, err := LoadModel(context.Background(), synthModel(t, "llama-tiny", gguf.TypeF16), &ModelParams{GPULayers: 0})
	require.NoError(t, err)
	t.Cleanup(func() { m.Close() })
	return m
}
