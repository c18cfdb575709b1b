package llama

import (
	"bufio"
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The files scripts/mutate-model found crashing llama.cpp, kept as patches of the demo
// model (llama/testdata/mutations/<class>.patch: "offset hex" per line). Each now fails to
// load with an error instead of aborting the process.
func TestMutatedDemoModel(t *testing.T) {
	base, err := os.ReadFile(filepath.Join("..", "models", "kjv-demo.gguf"))
	if os.IsNotExist(err) {
		t.Skip("models/kjv-demo.gguf is not in this copy of the module (a module zip leaves the models module out)")
	}
	require.NoError(t, err)
	patches, err := filepath.Glob(filepath.Join("testdata", "mutations", "*.patch"))
	require.NoError(t, err)
	require.NotEmpty(t, patches)
	for _, p := range patches {
		t.Run(strings.TrimSuffix(filepath.Base(p), ".patch"), func(t *testing.T) {
			buf := applyPatch(t, base, p)
			path := filepath.Join(t.TempDir(), "mutated.gguf")
			require.NoError(t, os.WriteFile(path, buf, 0o644))
			_, err := LoadModel(t.Context(), path, &ModelParams{GPULayers: 0})
			var le *LoadError
			assert.ErrorAs(t, err, &le)
		})
	}
}

func applyPatch(t *testing.T, base []byte, path string) []byte {
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	buf := append([]byte(nil), base...)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		off, data, ok := strings.Cut(sc.Text(), " ")
		require.True(t, ok, "%s: %q", path, sc.Text())
		at, err := strconv.Atoi(off)
		require.NoError(t, err)
		b, err := hex.DecodeString(data)
		require.NoError(t, err)
		require.LessOrEqual(t, at+len(b), len(buf))
		copy(buf[at:], b)
	}
	require.NoError(t, sc.Err())
	return buf
}
