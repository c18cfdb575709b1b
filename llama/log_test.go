package llama

import (
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/llamago/llamago/llama/gguf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Error details come from the lines llama.cpp logged on the failing call's own thread:
// eight loads failing at once, each for another reason, each get their own message.
func TestConcurrentLoadErrorsAreTheirOwn(t *testing.T) {
	src := synthModel(t, "llama-tiny", gguf.TypeF16)
	f, err := gguf.Open(src)
	require.NoError(t, err)
	defer f.Close()
	var missing []string
	for _, ti := range f.Tensors {
		if len(missing) < 8 && ti.Name != "token_embd.weight" && ti.Name != "output_norm.weight" {
			missing = append(missing, ti.Name)
		}
	}
	require.Len(t, missing, 8)
	dir := t.TempDir()
	paths := make([]string, len(missing))
	for i, name := range missing {
		paths[i] = filepath.Join(dir, fmt.Sprintf("without-%d.gguf", i))
		tensors := slices.DeleteFunc(slices.Clone(f.Tensors), func(ti gguf.TensorInfo) bool { return ti.Name == name })
		writeGGUF(t, paths[i], f.Metadata, tensors, func(n string) []byte {
			r, err := f.TensorData(n)
			require.NoError(t, err)
			b, err := io.ReadAll(r)
			require.NoError(t, err)
			return b
		})
	}
	for round := range 3 {
		errs := make([]error, len(paths))
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i, p := range paths {
			wg.Go(func() {
				<-start
				_, errs[i] = LoadModel(t.Context(), p, &ModelParams{GPULayers: 0})
			})
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			require.Error(t, err, "round %d: %s", round, missing[i])
			assert.Contains(t, err.Error(), "'"+missing[i]+"'", "round %d: its own missing tensor", round)
			for j, other := range missing {
				if j != i {
					assert.NotContains(t, err.Error(), "'"+other+"'", "round %d: %s has another load's message", round, missing[i])
				}
			}
		}
	}
}
