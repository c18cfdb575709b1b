package llama

import (
	"context"
	"os"
	"testing"

	"github.com/llamago/llamago/internal/llamacpp"
	"github.com/llamago/llamago/internal/testmodel"
	"github.com/llamago/llamago/llama/gguf"

	"github.com/stretchr/testify/require"
)

// llamaCppDir is the llama.cpp tree the tests read vocabularies, templates and grammars
// from (materialised by make deps; CI always has it).
func llamaCppDir(t testing.TB) string {
	t.Helper()
	dir, err := llamacpp.Dir()
	require.NoError(t, err)
	return dir
}

func vocabPath(t testing.TB, name string) string { return testmodel.VocabPath(t, name) }

func TestMain(m *testing.M) { os.Exit(testmodel.Main(m)) }

// synthModel returns the path of a random-weight model of a named shape (package
// internal/synth) with the real vocabulary of its family, written once per test process.
func synthModel(t testing.TB, shape string, typ gguf.TensorType) string {
	return testmodel.Path(t, shape, typ)
}

// loadTiny loads the llama-tiny model on the CPU and closes it when the test ends.
func loadTiny(t testing.TB) *Model {
	t.Helper()
	m, err := LoadModel(context.Background(), synthModel(t, "llama-tiny", gguf.TypeF16), &ModelParams{GPULayers: 0})
	require.NoError(t, err)
	t.Cleanup(func() { m.Close() })
	return m
}
