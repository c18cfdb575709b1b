package gguf

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sameValue compares values bit for bit, so NaN equals NaN and -0 differs
// from +0.
func sameValue(t *testing.T, want, got Value, key string) {
	t.Helper()
	assert.Equal(t, want.Type(), got.Type(), key)
	switch w := want.Any().(type) {
	case float32:
		g, ok := got.Any().(float32)
		if assert.True(t, ok, key) {
			assert.Equal(t, math.Float32bits(w), math.Float32bits(g), key)
		}
	case []float32:
		g, ok := got.Any().([]float32)
		if assert.True(t, ok, key) && assert.Len(t, g, len(w), key) {
			for i := range w {
				assert.Equal(t, math.Float32bits(w[i]), math.Float32bits(g[i]), key)
			}
		}
	case []Value:
		g, ok := got.Any().([]Value)
		if assert.True(t, ok, key) && assert.Len(t, g, len(w), key) {
			for i := range w {
				sameValue(t, w[i], g[i], fmt.Sprintf("%s[%d]", key, i))
			}
		}
	default:
		assert.Equal(t, want.Any(), got.Any(), key)
	}
}

func TestRoundTripMetadata(t *testing.T) {
	meta := allValues()
	data := writeGGUF(t, meta, nil, nil)
	f, err := Read(bytes.NewReader(data), int64(len(data)))
	require.NoError(t, err)
	assert.Equal(t, uint32(Version), f.Version)
	require.Len(t, f.Metadata, len(meta))
	for i, kv := range meta {
		assert.Equal(t, kv.Key, f.Metadata[i].Key, "metadata keeps file order")
		sameValue(t, kv.Value, f.Metadata[i].Value, kv.Key)
		e1, ok1 := kv.Value.Elem()
		e2, ok2 := f.Metadata[i].Value.Elem()
		assert.Equal(t, ok1, ok2, kv.Key)
		assert.Equal(t, e1, e2, kv.Key)
	}
	assert.Empty(t, f.Tensors)

	// Writing what was read gives the same bytes.
	again := writeGGUF(t, f.Metadata, nil, nil)
	assert.Equal(t, data, again)
}

func TestRoundTripTensorsEveryType(t *testing.T) {
	var tensors []TensorInfo
	for _, typ := range TensorTypes() {
		bs := typ.BlockSize()
		tensors = append(tensors,
			TensorInfo{Name: "t." + typ.String() + ".1d", Type: typ, Shape: []int64{bs * 3}},
			TensorInfo{Name: "t." + typ.String() + ".4d", Type: typ, Shape: []int64{bs, 3, 2, 1}})
	}
	for _, align := range []uint32{0, 1, 8, 64, 4096} {
		t.Run(fmt.Sprint("align=", align), func(t *testing.T) {
			meta := []KV{{"general.architecture", String("test")}}
			want := int64(DefaultAlignment)
			if align != 0 {
				meta = append(meta, KV{KeyAlignment, Uint32(align)})
				want = int64(align)
			}
			data := writeGGUF(t, meta, tensors, patternData)
			f, err := Read(bytes.NewReader(data), int64(len(data)))
			require.NoError(t, err)
			assert.Equal(t, want, f.Alignment)
			assert.Zero(t, f.DataOffset%want, "data section aligned")
			require.Len(t, f.Tensors, len(tensors))
			var next int64
			for i, ti := range f.Tensors {
				assert.Equal(t, tensors[i].Name, ti.Name)
				assert.Equal(t, tensors[i].Type, ti.Type)
				assert.Equal(t, tensors[i].Shape, ti.Shape)
				assert.Zero(t, ti.Offset%want, "%s offset aligned", ti.Name)
				assert.Equal(t, next, ti.Offset, "%s packed in order", ti.Name)
				next = alignUp(ti.Offset+ti.Size(), want)
				r, err := f.TensorData(ti.Name)
				require.NoError(t, err)
				got, err := io.ReadAll(r)
				require.NoError(t, err)
				assert.Equal(t, patternData(i, ti.Size()), got, ti.Name)
			}
			assert.Equal(t, f.DataOffset+next, f.Size, "last tensor padded")
		})
	}
}

func TestTensorSizes(t *testing.T) {
	// Block sizes and bytes from ggml-common.h, spot-checked by hand.
	for typ, want := range map[TensorType][2]int64{
		TypeF32: {1, 4}, TypeF16: {1, 2}, TypeBF16: {1, 2}, TypeQ8_0: {32, 34}, TypeQ4_0: {32, 18},
		TypeQ4_K: {256, 144}, TypeQ6_K: {256, 210}, TypeIQ4_XS: {256, 136}, TypeTQ1_0: {256, 54},
		TypeMXFP4: {32, 17}, TypeQ1_0: {128, 18},
	} {
		assert.Equal(t, want, [2]int64{typ.BlockSize(), typ.BlockBytes()}, typ.String())
	}
	assert.Len(t, TensorTypes(), 35)
	n, err := TensorSize(TypeQ8_0, []int64{4096, 14336})
	require.NoError(t, err)
	assert.Equal(t, int64(4096*14336/32*34), n)

	for _, tc := range []struct {
		typ   TensorType
		shape []int64
		msg   string
	}{
		{TypeF32, nil, "dimensions"},
		{TypeF32, []int64{1, 1, 1, 1, 1}, "dimensions"},
		{TypeF32, []int64{0}, "must be positive"},
		{TypeF32, []int64{-4}, "must be positive"},
		{TypeQ8_0, []int64{48}, "multiple of the q8_0 block size"},
		{TypeF32, []int64{1 << 32, 1 << 31}, "overflows the element count"},
		{TypeF32, []int64{1 << 62}, "overflows the byte size"},
		{TensorType(4), []int64{1}, "invalid tensor type"},
	} {
		_, err := TensorSize(tc.typ, tc.shape)
		if assert.Error(t, err, "%v %v", tc.typ, tc.shape) {
			assert.Contains(t, err.Error(), tc.msg)
			assert.Regexp(t, "^gguf: ", err.Error())
		}
	}
	for _, name := range []string{"F16", "q8_0", "Q4_K", "iq2_xxs"} {
		typ, err := ParseTensorType(name)
		require.NoError(t, err)
		assert.True(t, strings.EqualFold(name, typ.String()), name)
		assert.True(t, typ.Valid())
	}
	_, err = ParseTensorType("q4_2")
	assert.ErrorContains(t, err, "unknown tensor type")
	assert.Equal(t, "MOSTLY_Q4_K_M", FileType(15).String())
	assert.Equal(t, "MOSTLY_Q8_0", FileTypeMostlyQ8_0.String())
	assert.Equal(t, "unknown(99)", FileType(99).String())
}

func TestGetters(t *testing.T) {
	data := writeGGUF(t, allValues(), nil, nil)
	f, err := Read(bytes.NewReader(data), int64(len(data)))
	require.NoError(t, err)

	s, err := f.String("t.string")
	assert.NoError(t, err)
	assert.Equal(t, "héllo\x00world", s)
	u32, err := f.Uint32("t.uint32")
	assert.NoError(t, err)
	assert.Equal(t, uint32(4_000_000_000), u32)
	u64, err := f.Uint64("t.uint64")
	assert.NoError(t, err)
	assert.Equal(t, uint64(math.MaxUint64), u64)
	f32, err := f.Float32("t.float32")
	assert.NoError(t, err)
	assert.Equal(t, float32(3.25), f32)
	b, err := f.Bool("t.bool.true")
	assert.NoError(t, err)
	assert.True(t, b)
	ss, err := f.Strings("a.string")
	assert.NoError(t, err)
	assert.Equal(t, []string{"a", "", "ccc"}, ss)
	is, err := f.Int32s("a.int32")
	assert.NoError(t, err)
	assert.Equal(t, []int32{-1, 0, 1}, is)
	fs, err := f.Float32s("a.float32")
	assert.NoError(t, err)
	assert.Equal(t, float32(0.5), fs[0])
	for key, want := range map[string]int64{"t.uint8": 250, "t.int8": -7, "t.uint16": 65000, "t.int16": -30000,
		"t.uint32": 4_000_000_000, "t.int32": -2_000_000_000, "t.int64": math.MinInt64} {
		n, err := f.Int(key)
		assert.NoError(t, err, key)
		assert.Equal(t, want, n, key)
	}

	_, err = f.Int("t.uint64")
	assert.ErrorContains(t, err, "overflows int64")
	_, err = f.Uint32("t.int32")
	assert.EqualError(t, err, `gguf: key "t.int32" has type int32, want uint32`)
	_, err = f.Strings("a.int32")
	assert.EqualError(t, err, `gguf: key "a.int32" has type array of int32, want array`)
	_, err = f.Int("t.string")
	assert.ErrorContains(t, err, "want an integer")
	_, err = f.String("missing")
	assert.ErrorIs(t, err, ErrKeyNotFound)
	assert.ErrorContains(t, err, `"missing"`)
	_, err = f.TensorData("missing")
	assert.ErrorContains(t, err, `no tensor "missing"`)
	_, err = f.FileType()
	assert.ErrorIs(t, err, ErrKeyNotFound)
	_, ok := f.Tensor("missing")
	assert.False(t, ok)
}

func TestWriterErrors(t *testing.T) {
	ti := []TensorInfo{
		{Name: "a", Type: TypeF32, Shape: []int64{4}},
		{Name: "b", Type: TypeF16, Shape: []int64{3}},
	}
	newW := func() *Writer {
		w, err := NewWriter(io.Discard, nil, ti)
		require.NoError(t, err)
		return w
	}

	w := newW()
	assert.ErrorContains(t, w.WriteTensor("b", make([]byte, 6)), `next tensor is "a"`)
	assert.ErrorContains(t, w.WriteTensor("a", make([]byte, 15)), "got 15 bytes, f32 [4] needs 16")
	require.NoError(t, w.WriteTensor("a", make([]byte, 16)))
	assert.ErrorContains(t, w.Close(), `tensor "b" incomplete (0 of 6 bytes)`)

	w = newW()
	_, err := w.Write(make([]byte, 16+6+1))
	assert.ErrorContains(t, err, "1 bytes written past the end")

	w = newW()
	_, err = w.Write(make([]byte, 10)) // split writes cross tensor boundaries
	require.NoError(t, err)
	_, err = w.Write(make([]byte, 12))
	require.NoError(t, err)
	require.NoError(t, w.Close())
	assert.Equal(t, w.Size(), w.DataOffset()+32+32)

	for _, tc := range []struct {
		meta    []KV
		tensors []TensorInfo
		msg     string
	}{
		{[]KV{{"", Uint8(1)}}, nil, "empty metadata key"},
		{[]KV{{"k", Uint8(1)}, {"k", Uint8(2)}}, nil, `duplicate metadata key "k"`},
		{[]KV{{KeyAlignment, Uint32(48)}}, nil, "power of two"},
		{[]KV{{KeyAlignment, Uint64(64)}}, nil, "must be a uint32"},
		{[]KV{{"k", Value{}}}, nil, "zero Value"},
		{[]KV{{"k", Array([]Value{Uint8(1)})}}, nil, "element 0 of an array of arrays has type uint8"},
		{[]KV{{"k", nest(maxArrayDepth + 1)}}, nil, "nested deeper"},
		{nil, []TensorInfo{{Name: "x", Type: TypeF32, Shape: []int64{1}}, {Name: "x", Type: TypeF32, Shape: []int64{1}}}, `duplicate tensor name "x"`},
		{nil, []TensorInfo{{Name: "", Type: TypeF32, Shape: []int64{1}}}, "name"},
		{nil, []TensorInfo{{Name: string(make([]byte, 64)), Type: TypeF32, Shape: []int64{1}}}, "1 to 63 bytes"},
		{nil, []TensorInfo{{Name: "q", Type: TypeQ8_0, Shape: []int64{16}}}, "block size 32"},
	} {
		_, err := NewWriter(io.Discard, tc.meta, tc.tensors)
		if assert.Error(t, err, tc.msg) {
			assert.Contains(t, err.Error(), tc.msg)
			assert.Regexp(t, "^gguf: ", err.Error())
		}
	}
	// The deepest allowed nesting round-trips.
	data := writeGGUF(t, []KV{{"deep", nest(maxArrayDepth)}}, nil, nil)
	f, err := Read(bytes.NewReader(data), int64(len(data)))
	require.NoError(t, err)
	sameValue(t, nest(maxArrayDepth), f.Metadata[0].Value, "deep")
}

// A file without tensors is not padded to its alignment (a fuzzer found
// that a 2^29 alignment made the writer emit 512 MB of padding).
func TestNoTensorsNoPadding(t *testing.T) {
	meta := []KV{{KeyAlignment, Uint32(1 << 30)}}
	var buf bytes.Buffer
	w, err := NewWriter(&buf, meta, nil)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	assert.Less(t, buf.Len(), 100)
	assert.Equal(t, int64(buf.Len()), w.Size())
	assert.Equal(t, int64(1<<30), w.DataOffset())
	f, err := Read(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	require.NoError(t, err)
	assert.Equal(t, int64(1<<30), f.Alignment)
	assert.Equal(t, int64(1<<30), f.DataOffset)
}

// nest returns arrays nested depth levels deep.
func nest(depth int) Value {
	v := Array([]uint8{1})
	for range depth - 1 {
		v = Array([]Value{v})
	}
	return v
}

func TestOpenClose(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.gguf")
	require.NoError(t, os.WriteFile(p, writeGGUF(t, allValues(), []TensorInfo{{Name: "w", Type: TypeF32, Shape: []int64{2, 2}}}, patternData), 0o644))
	f, err := Open(p)
	require.NoError(t, err)
	r, err := f.TensorData("w")
	require.NoError(t, err)
	b, err := io.ReadAll(r)
	require.NoError(t, err)
	assert.Equal(t, patternData(0, 16), b)
	assert.NoError(t, f.Close())
	assert.NoError(t, f.Close(), "Close is idempotent")

	_, err = Open(filepath.Join(t.TempDir(), "missing.gguf"))
	assert.ErrorContains(t, err, "gguf: open")
	require.NoError(t, os.WriteFile(p, []byte("GGUF"), 0o644))
	_, err = Open(p)
	assert.ErrorContains(t, err, "truncated header")
	assert.ErrorContains(t, err, p, "the error names the file")
}
