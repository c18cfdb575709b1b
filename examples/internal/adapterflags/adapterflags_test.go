package adapterflags

import (
	"io"
	"testing"

	"github.com/llamago/llamago/examples/internal/cli"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func parse(t *testing.T, args ...string) (*Flags, error) {
	fl := cli.New("t", "test")
	fl.SetOutput(io.Discard)
	f := Register(fl.Group("adapters"))
	return f, fl.Parse(args)
}

// The flags read as llama.cpp's: repeated or comma-separated files, FNAME:SCALE pairs.
func TestFlagsParseLikeLlamaCpp(t *testing.T) {
	f, err := parse(t, "-lora", "a.gguf,b.gguf", "--lora", "c.gguf", "-lora-scaled", "d.gguf:0.5,C:/x.gguf:2",
		"-control-vector", "v.gguf", "--control-vector-scaled", "w.gguf:-1.5", "-control-vector-layer-range", "2,10")
	require.NoError(t, err)
	assert.Equal(t, []scaled{{"a.gguf", 1}, {"b.gguf", 1}, {"c.gguf", 1}, {"d.gguf", 0.5}, {"C:/x.gguf", 2}}, f.lora)
	assert.Equal(t, []scaled{{"v.gguf", 1}, {"w.gguf", -1.5}}, f.cvec)
	assert.Equal(t, [2]int{2, 10}, [2]int{f.first, f.last})

	for _, args := range [][]string{
		{"-lora", ""}, {"-lora", "a,,b"}, {"-lora-scaled", "a.gguf"}, {"-lora-scaled", "a.gguf:x"}, {"-lora-scaled", ":1"},
		{"-control-vector-layer-range", "3"}, {"-control-vector-layer-range", "a,b"},
	} {
		_, err := parse(t, args...)
		assert.Error(t, err, "%q", args)
	}
}
