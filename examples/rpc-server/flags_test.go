package main

import (
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRPCServerFlags(t *testing.T) {
	c, err := parseFlags(nil, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1", c.host, "loopback unless told otherwise")
	assert.Equal(t, 50052, c.port)
	assert.Zero(t, c.memory)
	assert.Empty(t, c.cacheDir)
	assert.Nil(t, c.devices)

	c, err = parseFlags([]string{"-host", "0.0.0.0", "-port", "0", "-mem", "1.5GiB", "-cache", "/tmp/c", "-threads", "3", "-device", "CUDA0, CUDA1"}, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, "0.0.0.0", c.host)
	assert.Equal(t, 0, c.port)
	assert.Equal(t, uint64(3<<29), c.memory)
	assert.Equal(t, "/tmp/c", c.cacheDir)
	assert.Equal(t, 3, c.threads)
	assert.Equal(t, []string{"CUDA0", "CUDA1"}, c.devices)

	for _, bad := range [][]string{
		{"-port", "70000"}, {"-port", "-1"}, {"-threads", "-2"}, {"-mem", "lots"}, {"-mem", "0"}, {"-mem", "-4GiB"}, {"extra"},
	} {
		_, err := parseFlags(bad, io.Discard)
		assert.Error(t, err, "%q", bad)
	}
}

func TestRPCServerParseSize(t *testing.T) {
	for in, want := range map[string]uint64{
		"2048": 2048 << 20, "512MiB": 512 << 20, "4GiB": 4 << 30, "4g": 4 << 30, "1.5G": 3 << 29,
		"100MB": 100e6, "64KiB": 64 << 10, "1TiB": 1 << 40, " 8 GiB ": 8 << 30, "4096B": 4096,
	} {
		got, err := parseSize(in)
		if assert.NoError(t, err, in) {
			assert.Equal(t, want, got, in)
		}
	}
}
