package gguf

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/llamago/llamago/internal/llamacpp"
	"github.com/stretchr/testify/require"
)

// modelsDir is llama.cpp's models directory; a missing one fails the test (CI always has it).
func modelsDir(t testing.TB) string {
	t.Helper()
	dir, err := llamacpp.Dir()
	require.NoError(t, err)
	return filepath.Join(dir, "models")
}

// allValues has one entry of every value type, arrays of every element
// type, empty arrays, nested arrays and awkward floats.
func allValues() []KV {
	return []KV{
		{"t.uint8", Uint8(250)},
		{"t.int8", Int8(-7)},
		{"t.uint16", Uint16(65000)},
		{"t.int16", Int16(-30000)},
		{"t.uint32", Uint32(4_000_000_000)},
		{"t.int32", Int32(-2_000_000_000)},
		{"t.float32", Float32(3.25)},
		{"t.float32.nan", Float32(float32(math.NaN()))},
		{"t.float32.negzero", Float32(float32(math.Copysign(0, -1)))},
		{"t.bool.true", Bool(true)},
		{"t.bool.false", Bool(false)},
		{"t.string", String("héllo\x00world")},
		{"t.string.empty", String("")},
		{"t.uint64", Uint64(math.MaxUint64)},
		{"t.int64", Int64(math.MinInt64)},
		{"t.float64", Float64(-1e300)},
		{"a.uint8", Array([]uint8{0, 1, 255})},
		{"a.int8", Array([]int8{-128, 0, 127})},
		{"a.uint16", Array([]uint16{1, 65535})},
		{"a.int16", Array([]int16{-32768, 32767})},
		{"a.uint32", Array([]uint32{7, 8, 9})},
		{"a.int32", Array([]int32{-1, 0, 1})},
		{"a.float32", Array([]float32{0.5, float32(math.Inf(-1))})},
		{"a.bool", Array([]bool{true, false, true})},
		{"a.string", Array([]string{"a", "", "ccc"})},
		{"a.uint64", Array([]uint64{1 << 63})},
		{"a.int64", Array([]int64{-1 << 62})},
		{"a.float64", Array([]float64{math.Pi, math.SmallestNonzeroFloat64})},
		{"a.empty", Array([]int32{})},
		{"a.nested", Array([]Value{
			Array([]string{"x", "y"}),
			Array([]uint8{}),
			Array([]Value{Array([]float64{1, 2}), Array([]bool{true})}),
		})},
		{"a.nested.empty", Array([]Value{})},
	}
}

// writeGGUF writes a file with the given metadata and tensors whose data is
// produced by data(i, size); it fails the test on error.
func writeGGUF(t testing.TB, meta []KV, tensors []TensorInfo, data func(i int, size int64) []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, meta, tensors)
	require.NoError(t, err)
	for i, ti := range w.Tensors() {
		require.NoError(t, w.WriteTensor(ti.Name, data(i, ti.Size())))
	}
	require.NoError(t, w.Close())
	return buf.Bytes()
}

// patternData returns size bytes that differ per tensor.
func patternData(i int, size int64) []byte {
	b := make([]byte, size)
	for j := range b {
		b[j] = byte(j*7 + i*13 + 1)
	}
	return b
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, data, 0o644))
}
