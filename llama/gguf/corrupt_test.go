package gguf

import (
	"bytes"
	"encoding/binary"
	"flag"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite testdata/bad from the generators")

// raw builds GGUF bytes by hand, valid or not.
type raw struct{ bytes.Buffer }

func gguf(version uint32, nTensors, nKV uint64) *raw {
	r := &raw{}
	r.WriteString("GGUF")
	return r.u32(version).u64(nTensors).u64(nKV)
}

func (r *raw) u8(x uint8) *raw { r.WriteByte(x); return r }
func (r *raw) u32(x uint32) *raw {
	r.Write(binary.LittleEndian.AppendUint32(nil, x))
	return r
}
func (r *raw) u64(x uint64) *raw {
	r.Write(binary.LittleEndian.AppendUint64(nil, x))
	return r
}
func (r *raw) str(s string) *raw { r.u64(uint64(len(s))); r.WriteString(s); return r }

// kvU32 adds a uint32 entry.
func (r *raw) kvU32(key string, v uint32) *raw { return r.str(key).u32(uint32(ValueUint32)).u32(v) }

// tensor adds a tensor info.
func (r *raw) tensor(name string, typ TensorType, offset uint64, dims ...uint64) *raw {
	r.str(name).u32(uint32(len(dims)))
	for _, d := range dims {
		r.u64(d)
	}
	return r.u32(uint32(typ)).u64(offset)
}

// pad pads to 32 bytes and appends n data bytes.
func (r *raw) data(n int) *raw {
	for r.Len()%32 != 0 {
		r.WriteByte(0)
	}
	r.Write(make([]byte, n))
	return r
}

// badFiles are hostile or broken files and the reason each must report.
func badFiles() map[string]struct {
	data   []byte
	reason string
} {
	nested := gguf(3, 0, 1).str("deep").u32(uint32(ValueArray))
	for range 100 {
		nested.u32(uint32(ValueArray)).u64(1)
	}
	nested.u32(uint32(ValueUint8)).u64(1).u8(1)

	type entry = struct {
		data   []byte
		reason string
	}
	return map[string]entry{
		"bad-magic":          {[]byte("GGML\x03\x00\x00\x00" + strings.Repeat("\x00", 16)), "bad magic"},
		"empty":              {[]byte{}, "truncated header"},
		"truncated-header":   {gguf(3, 0, 0).Bytes()[:12], "truncated header"},
		"version-1":          {gguf(1, 0, 0).Bytes(), "unsupported version 1"},
		"version-4":          {gguf(4, 0, 0).Bytes(), "unsupported version 4, want 2 or 3"},
		"big-endian":         {gguf(0x03000000, 0, 0).Bytes(), "big-endian"},
		"huge-kv-count":      {gguf(3, 0, 1<<62).Bytes(), "metadata count 4611686018427387904 cannot fit"},
		"huge-tensor-count":  {gguf(3, 1<<40, 0).Bytes(), "tensor count 1099511627776 cannot fit"},
		"huge-key-length":    {gguf(3, 0, 1).u64(1 << 40).u32(0).u64(0).Bytes(), "key length 1099511627776"},
		"huge-string-length": {gguf(3, 0, 1).str("k").u32(uint32(ValueString)).u64(1 << 62).Bytes(), "string length 4611686018427387904"},
		"huge-array-count": {gguf(3, 0, 1).str("k").u32(uint32(ValueArray)).u32(uint32(ValueUint32)).u64(1 << 40).u32(1).Bytes(),
			"array of 1099511627776 uint32"},
		"huge-string-array": {gguf(3, 0, 1).str("k").u32(uint32(ValueArray)).u32(uint32(ValueString)).u64(1 << 61).u64(0).Bytes(),
			"array of 2305843009213693952 string"},
		"deep-nesting":       {nested.Bytes(), "nested deeper than 8"},
		"duplicate-key":      {gguf(3, 0, 2).kvU32("a", 1).kvU32("a", 2).Bytes(), `duplicate metadata key "a"`},
		"empty-key":          {gguf(3, 0, 1).kvU32("", 1).Bytes(), "empty key"},
		"bad-value-type":     {gguf(3, 0, 1).str("k").u32(13).u32(0).Bytes(), "invalid value type 13"},
		"bad-array-type":     {gguf(3, 0, 1).str("k").u32(uint32(ValueArray)).u32(99).u64(0).Bytes(), "invalid array element type 99"},
		"bad-bool":           {gguf(3, 0, 1).str("k").u32(uint32(ValueBool)).u8(2).Bytes(), "invalid bool byte 2"},
		"truncated-value":    {gguf(3, 0, 1).str("k").u32(uint32(ValueUint64)).u32(7).Bytes(), "unexpected end of file reading uint64"},
		"alignment-type":     {gguf(3, 0, 1).str(KeyAlignment).u32(uint32(ValueUint64)).u64(32).Bytes(), "general.alignment has type uint64, want uint32"},
		"alignment-not-pow2": {gguf(3, 0, 1).kvU32(KeyAlignment, 48).Bytes(), "general.alignment is 48, want a power of two"},
		"alignment-zero":     {gguf(3, 0, 1).kvU32(KeyAlignment, 0).Bytes(), "general.alignment is 0"},
		"too-many-dims":      {gguf(3, 1, 0).tensor("t", TypeF32, 0, 1, 1, 1, 1, 1).data(4).Bytes(), "has 5 dimensions"},
		"no-dims":            {gguf(3, 1, 0).tensor("t", TypeF32, 0).data(4).Bytes(), "has 0 dimensions"},
		"zero-dim":           {gguf(3, 1, 0).tensor("t", TypeF32, 0, 4, 0).data(4).Bytes(), "dimension 1 is 0, must be positive"},
		"negative-dim":       {gguf(3, 1, 0).tensor("t", TypeF32, 0, 1<<63).data(4).Bytes(), "must be positive"},
		"dims-overflow":      {gguf(3, 1, 0).tensor("t", TypeF32, 0, 1<<20, 1<<20, 1<<20, 1<<20).data(4).Bytes(), "overflows the element count"},
		"bytes-overflow":     {gguf(3, 1, 0).tensor("t", TypeF64, 0, 1<<31, 1<<31).data(4).Bytes(), "overflows the byte size"},
		"bad-tensor-type":    {gguf(3, 1, 0).tensor("t", 4, 0, 32).data(4).Bytes(), "invalid tensor type 4"},
		"bad-block":          {gguf(3, 1, 0).tensor("t", TypeQ8_0, 0, 16).data(34).Bytes(), "not a multiple of the q8_0 block size 32"},
		"empty-tensor-name":  {gguf(3, 1, 0).tensor("", TypeF32, 0, 1).data(4).Bytes(), "empty tensor name"},
		"long-tensor-name":   {gguf(3, 1, 0).tensor(strings.Repeat("x", 64), TypeF32, 0, 1).data(4).Bytes(), "64 bytes long"},
		"duplicate-tensor":   {gguf(3, 2, 0).tensor("t", TypeF32, 0, 1).tensor("t", TypeF32, 32, 1).data(64).Bytes(), `duplicate tensor name "t"`},
		"misaligned-offset":  {gguf(3, 1, 0).tensor("t", TypeF32, 4, 1).data(64).Bytes(), "offset 4 is not a multiple of the alignment 32"},
		"data-beyond-eof":    {gguf(3, 1, 0).tensor("t", TypeF32, 0, 1024).data(100).Bytes(), "beyond the end"},
		"offset-beyond-eof":  {gguf(3, 1, 0).tensor("t", TypeF32, 1<<62, 1).data(100).Bytes(), "beyond the end"},
		"offset-overflow":    {gguf(3, 1, 0).tensor("t", TypeF32, 1<<63, 1).data(100).Bytes(), "offset 9223372036854775808 out of range"},
		"no-data-section":    {gguf(3, 1, 0).tensor("t", TypeF32, 0, 1).Bytes(), "beyond the end"},
	}
}

func TestBadFiles(t *testing.T) {
	dir := filepath.Join("testdata", "bad")
	cases := badFiles()
	if *update {
		require.NoError(t, os.RemoveAll(dir))
		require.NoError(t, os.MkdirAll(dir, 0o755))
		for name, c := range cases {
			require.NoError(t, os.WriteFile(filepath.Join(dir, name+".gguf"), c.data, 0o644))
		}
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.gguf"))
	require.NoError(t, err)
	var names []string
	for _, p := range files {
		names = append(names, strings.TrimSuffix(filepath.Base(p), ".gguf"))
	}
	sort.Strings(names)
	var want []string
	for name := range cases {
		want = append(want, name)
	}
	sort.Strings(want)
	require.Equal(t, want, names, "testdata/bad is out of date: run go test -run TestBadFiles -update")

	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(dir, name+".gguf"))
			require.NoError(t, err)
			assert.Equal(t, cases[name].data, data, "testdata/bad is out of date: run go test -run TestBadFiles -update")
			_, err = Read(bytes.NewReader(data), int64(len(data)))
			if assert.Error(t, err) {
				assert.Contains(t, err.Error(), cases[name].reason)
				assert.Regexp(t, "^gguf: ", err.Error())
			}
		})
	}
}

// TestTruncated checks that every prefix of a valid file that cuts into
// the header or tensor data fails; only the last tensor's padding is
// optional.
func TestTruncated(t *testing.T) {
	data := smallValidFile(t)
	f, err := Read(bytes.NewReader(data), int64(len(data)))
	require.NoError(t, err)
	last := f.Tensors[len(f.Tensors)-1]
	end := int(f.DataOffset + last.Offset + last.Size())
	require.Less(t, end, len(data), "the test needs trailing padding")
	for n := range len(data) {
		_, err := Read(bytes.NewReader(data[:n]), int64(n))
		if n < end {
			if assert.Error(t, err, "prefix of %d bytes", n) {
				assert.Regexp(t, "^gguf: ", err.Error())
			}
		} else {
			assert.NoError(t, err, "prefix of %d bytes cuts only padding", n)
		}
	}
}

// smallValidFile has every value type and two tensors.
func smallValidFile(t testing.TB) []byte {
	return writeGGUF(t, allValues(), []TensorInfo{
		{Name: "a", Type: TypeF32, Shape: []int64{3, 2}},
		{Name: "b", Type: TypeQ8_0, Shape: []int64{32}},
	}, patternData)
}
