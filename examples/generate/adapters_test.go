package main

import (
	"bytes"
	"flag"
	"io"
	"path/filepath"
	"testing"

	"github.com/llamago/llamago/examples/internal/adapterflags"
	"github.com/llamago/llamago/internal/testmodel"
	"github.com/llamago/llamago/llama"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// -lora-scaled FNAME:SCALE through the generate command: scale 0 recites the verse as the
// model alone does, a large scale bends the text away from it.
func TestGenerateWithLoRAFlag(t *testing.T) {
	path := demoModel(t)
	lora := testmodel.LoRA(t, path)
	greedy := llama.DefaultSamplingParams()
	greedy.Temperature = 0
	generate := func(args ...string) string {
		fs := flag.NewFlagSet("generate", flag.ContinueOnError)
		af := adapterflags.Register(fs)
		require.NoError(t, fs.Parse(args))
		var out bytes.Buffer
		require.NoError(t, run(t.Context(), &out, path, "The LORD is my shepherd;", 8, 256, 0, 2, &greedy, af))
		return out.String()
	}
	plain := generate()
	assert.Contains(t, plain, "I shall not want")
	assert.Equal(t, plain, generate("-lora-scaled", lora+":0"))
	assert.NotEqual(t, plain, generate("-lora-scaled", lora+":8"))

	fs := flag.NewFlagSet("generate", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	af := adapterflags.Register(fs)
	require.NoError(t, fs.Parse([]string{"-lora", filepath.Join(t.TempDir(), "missing.gguf")}))
	var out bytes.Buffer
	err := run(t.Context(), &out, path, "x", 1, 256, 0, 2, &greedy, af)
	var le *llama.LoadError
	assert.ErrorAs(t, err, &le)
}
