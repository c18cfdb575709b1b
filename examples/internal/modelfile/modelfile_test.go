package modelfile

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/llamago/llamago/internal/llamacpp"
	"github.com/llamago/llamago/llama/gguf"
)

// Without -model and away from a checkout the examples stop and say how to name a model;
// random weights come only when asked for by name.
func TestResolveDefault(t *testing.T) {
	llamaCpp, err := llamacpp.Dir() // found from the checkout, before leaving it
	require.NoError(t, err)
	t.Setenv("LLAMA_CPP_DIR", llamaCpp)
	t.Setenv("LLAMAGO_DEMO_MODEL", "")
	t.Setenv("LLAMAGO_CACHE", t.TempDir())
	t.Chdir(t.TempDir())

	_, err = ResolveDefault("", gguf.TypeQ8_0)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "-model FILE")
	assert.Contains(t, err.Error(), Synthetic+"qwen2-0.5b")

	p, err := ResolveDefault("mine.gguf", gguf.TypeQ8_0)
	require.NoError(t, err)
	assert.Equal(t, "mine.gguf", p, "a named file is taken as it is")

	p, err = ResolveDefault(Synthetic+"qwen2-tiny", gguf.TypeQ8_0)
	require.NoError(t, err)
	assert.Equal(t, "synthetic-qwen2-tiny-q8_0.gguf", filepath.Base(p))
	_, err = os.Stat(p)
	assert.NoError(t, err, "written")

	_, err = ResolveDefault(Synthetic+"no-such-shape", gguf.TypeQ8_0)
	assert.ErrorContains(t, err, "unknown shape")
}
