package gguf

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
)

// Magic is the first four bytes of every GGUF file.
const Magic = "GGUF"

// DefaultAlignment is the data alignment when general.alignment is absent.
const DefaultAlignment = 32

// KeyAlignment is the metadata key that overrides the data alignment.
const KeyAlignment = "general.alignment"

// maxNameLen is the longest tensor name ggml accepts (GGML_MAX_NAME - 1).
const maxNameLen = 63

// Smallest encodings, used to bound counts before allocating: a key-value
// pair with a one-character key and a uint8 value, and a tensor info with
// a one-character name and one dimension.
const (
	minKVSize     = 8 + 1 + 4 + 1
	minTensorSize = 8 + 1 + 4 + 8 + 4 + 8
)

// ErrKeyNotFound is returned (wrapped) by the typed getters of [File] when
// the key is absent.
var ErrKeyNotFound = errors.New("gguf: key not found")

// File is a parsed GGUF file: header, metadata and tensor infos. Tensor
// data stays in the underlying reader and is read on demand with
// [File.TensorData].
type File struct {
	Version    uint32
	Metadata   []KV         // in file order
	Tensors    []TensorInfo // in file order
	Alignment  int64        // general.alignment or DefaultAlignment
	DataOffset int64        // absolute offset of the tensor data section
	Size       int64        // file size

	r       io.ReaderAt
	closer  io.Closer
	keys    map[string]int
	tensors map[string]int
}

// TensorInfo describes one tensor.
type TensorInfo struct {
	Name string
	Type TensorType
	// Shape is in ggml order: Shape[0] (ne[0]) is the innermost, contiguous
	// dimension, e.g. a weight mapping n_in to n_out features is
	// [n_in, n_out].
	Shape []int64
	// Offset is the tensor's offset within the data section (relative to
	// File.DataOffset). NewWriter computes it; its input value is ignored.
	Offset int64
}

// Elements returns the number of elements (1 for an empty shape).
func (t TensorInfo) Elements() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// Size returns the tensor's size in bytes, or 0 if its type or shape is
// invalid (never the case for tensors returned by Read).
func (t TensorInfo) Size() int64 {
	n, err := tensorSize(t.Type, t.Shape)
	if err != nil {
		return 0
	}
	return n
}

// Open opens and parses the GGUF file at path. Only the header, metadata
// and tensor infos are read. Close the File to close the underlying file.
func Open(path string) (*File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("gguf: %w", err)
	}
	st, err := fh.Stat()
	if err != nil {
		fh.Close()
		return nil, fmt.Errorf("gguf: %w", err)
	}
	f, err := Read(fh, st.Size())
	if err != nil {
		fh.Close()
		return nil, fmt.Errorf("%w (file %s)", err, path)
	}
	f.closer = fh
	return f, nil
}

// Read parses a GGUF file of the given size from r. Every count and length
// in the file is checked against the bytes that remain before it is used,
// and memory grows only with the bytes actually parsed, so a hostile file
// cannot cause large allocations or panics.
func Read(r io.ReaderAt, size int64) (*File, error) {
	if size < 0 {
		return nil, fmt.Errorf("gguf: negative file size %d", size)
	}
	d := &decoder{
		br:   bufio.NewReaderSize(io.NewSectionReader(r, 0, size), 64<<10),
		size: size,
	}
	f := &File{r: r, Size: size}
	if err := f.parse(d); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *File) parse(d *decoder) error {
	magic, err := d.bytes(4, "magic")
	if err != nil {
		return fmt.Errorf("gguf: truncated header: %w", err)
	}
	if string(magic) != Magic {
		return fmt.Errorf("gguf: bad magic %q, want %q: not a GGUF file", magic, Magic)
	}
	if f.Version, err = d.u32("version"); err != nil {
		return fmt.Errorf("gguf: truncated header: %w", err)
	}
	switch v := f.Version; {
	case v == 2 || v == 3:
	case v == 1:
		return errors.New("gguf: unsupported version 1 (GGUFv1 is obsolete; convert the model again)")
	case v&0xFFFF == 0:
		return fmt.Errorf("gguf: unsupported version %#x: the file is probably big-endian", v)
	default:
		return fmt.Errorf("gguf: unsupported version %d, want 2 or 3", v)
	}
	nTensors, err := d.u64("tensor count")
	if err != nil {
		return fmt.Errorf("gguf: truncated header: %w", err)
	}
	nKV, err := d.u64("metadata count")
	if err != nil {
		return fmt.Errorf("gguf: truncated header: %w", err)
	}
	// Counts are signed in ggml; anything huge is bogus anyway.
	if nKV > uint64(d.remaining()/minKVSize) {
		return fmt.Errorf("gguf: metadata count %d cannot fit in the %d bytes after the header", nKV, d.remaining())
	}
	if nTensors > uint64(d.remaining()/minTensorSize) {
		return fmt.Errorf("gguf: tensor count %d cannot fit in the %d bytes after the header", nTensors, d.remaining())
	}

	// Counts are bounded by the file size, but a big file could still claim
	// billions of entries: grow the slices as entries are actually read.
	f.Metadata = make([]KV, 0, min(nKV, 1024))
	f.keys = make(map[string]int, min(nKV, 1024))
	for i := range int(nKV) {
		key, err := d.str("key")
		if err != nil {
			return fmt.Errorf("gguf: metadata entry %d: %w", i, err)
		}
		if key == "" {
			return fmt.Errorf("gguf: metadata entry %d: empty key", i)
		}
		if _, dup := f.keys[key]; dup {
			return fmt.Errorf("gguf: duplicate metadata key %q", key)
		}
		t, err := d.u32("value type")
		if err != nil {
			return fmt.Errorf("gguf: metadata key %q: %w", key, err)
		}
		v, err := d.value(ValueType(t), 0)
		if err != nil {
			return fmt.Errorf("gguf: metadata key %q: %w", key, err)
		}
		f.keys[key] = len(f.Metadata)
		f.Metadata = append(f.Metadata, KV{key, v})
	}

	f.Alignment = DefaultAlignment
	if v, ok := f.Lookup(KeyAlignment); ok {
		a, ok := v.x.(uint32)
		if !ok || v.typ != ValueUint32 {
			return fmt.Errorf("gguf: %s has type %s, want uint32", KeyAlignment, v.typ)
		}
		if a == 0 || a&(a-1) != 0 {
			return fmt.Errorf("gguf: %s is %d, want a power of two", KeyAlignment, a)
		}
		f.Alignment = int64(a)
	}

	f.Tensors = make([]TensorInfo, 0, min(nTensors, 1024))
	f.tensors = make(map[string]int, min(nTensors, 1024))
	for i := range int(nTensors) {
		ti, err := d.tensorInfo()
		if err != nil {
			if ti.Name != "" {
				return fmt.Errorf("gguf: tensor %d (%q): %w", i, ti.Name, err)
			}
			return fmt.Errorf("gguf: tensor %d: %w", i, err)
		}
		if _, dup := f.tensors[ti.Name]; dup {
			return fmt.Errorf("gguf: duplicate tensor name %q", ti.Name)
		}
		f.tensors[ti.Name] = len(f.Tensors)
		f.Tensors = append(f.Tensors, ti)
	}

	f.DataOffset = alignUp(d.off, f.Alignment)
	if len(f.Tensors) > 0 && f.DataOffset > f.Size {
		return fmt.Errorf("gguf: data section starts at %d, beyond the end of the %d-byte file", f.DataOffset, f.Size)
	}
	for _, ti := range f.Tensors {
		if ti.Offset%f.Alignment != 0 {
			return fmt.Errorf("gguf: tensor %q: offset %d is not a multiple of the alignment %d", ti.Name, ti.Offset, f.Alignment)
		}
		// DataOffset <= Size, so neither sum below can overflow once the
		// first comparison passed.
		if ti.Offset > f.Size-f.DataOffset || ti.Size() > f.Size-f.DataOffset-ti.Offset {
			return fmt.Errorf("gguf: tensor %q: data [%d, +%d) lies beyond the end of the %d-byte file (data section at %d)",
				ti.Name, ti.Offset, ti.Size(), f.Size, f.DataOffset)
		}
	}
	return nil
}

// Close closes the file opened by Open. It is a no-op for files from Read
// and safe to call more than once.
func (f *File) Close() error {
	c := f.closer
	f.closer = nil
	if c == nil {
		return nil
	}
	if err := c.Close(); err != nil {
		return fmt.Errorf("gguf: %w", err)
	}
	return nil
}

// Lookup returns the value stored under key.
func (f *File) Lookup(key string) (Value, bool) {
	i, ok := f.keys[key]
	if !ok {
		return Value{}, false
	}
	return f.Metadata[i].Value, true
}

// Tensor returns the info of the named tensor.
func (f *File) Tensor(name string) (TensorInfo, bool) {
	i, ok := f.tensors[name]
	if !ok {
		return TensorInfo{}, false
	}
	return f.Tensors[i], true
}

// TensorData returns a reader over the named tensor's bytes.
func (f *File) TensorData(name string) (*io.SectionReader, error) {
	ti, ok := f.Tensor(name)
	if !ok {
		return nil, fmt.Errorf("gguf: no tensor %q", name)
	}
	return io.NewSectionReader(f.r, f.DataOffset+ti.Offset, ti.Size()), nil
}

// FileType returns general.file_type.
func (f *File) FileType() (FileType, error) {
	v, err := f.Uint32("general.file_type")
	return FileType(v), err
}

// getAs fetches key and asserts its Go form; the getters are strict about
// the stored type, like llama.cpp's loader.
func getAs[T any](f *File, key string, want ValueType) (T, error) {
	var zero T
	v, ok := f.Lookup(key)
	if !ok {
		return zero, fmt.Errorf("%w: %q", ErrKeyNotFound, key)
	}
	x, ok := v.x.(T)
	if !ok {
		return zero, fmt.Errorf("gguf: key %q has type %s, want %s", key, describe(v), want)
	}
	return x, nil
}

func describe(v Value) string {
	if e, ok := v.Elem(); ok {
		return "array of " + e.String()
	}
	return v.typ.String()
}

// String returns the string stored under key.
func (f *File) String(key string) (string, error) { return getAs[string](f, key, ValueString) }

// Bool returns the bool stored under key.
func (f *File) Bool(key string) (bool, error) { return getAs[bool](f, key, ValueBool) }

// Uint32 returns the uint32 stored under key. The stored type must be
// uint32, as llama.cpp requires for hyperparameters; see [File.Int].
func (f *File) Uint32(key string) (uint32, error) { return getAs[uint32](f, key, ValueUint32) }

// Uint64 returns the uint64 stored under key (stored type uint64).
func (f *File) Uint64(key string) (uint64, error) { return getAs[uint64](f, key, ValueUint64) }

// Float32 returns the float32 stored under key (stored type float32).
func (f *File) Float32(key string) (float32, error) { return getAs[float32](f, key, ValueFloat32) }

// Int returns an integer of any stored integer type as int64.
func (f *File) Int(key string) (int64, error) {
	v, ok := f.Lookup(key)
	if !ok {
		return 0, fmt.Errorf("%w: %q", ErrKeyNotFound, key)
	}
	switch x := v.x.(type) {
	case uint8:
		return int64(x), nil
	case int8:
		return int64(x), nil
	case uint16:
		return int64(x), nil
	case int16:
		return int64(x), nil
	case uint32:
		return int64(x), nil
	case int32:
		return int64(x), nil
	case int64:
		return x, nil
	case uint64:
		if x > math.MaxInt64 {
			return 0, fmt.Errorf("gguf: key %q: %d overflows int64", key, x)
		}
		return int64(x), nil
	}
	return 0, fmt.Errorf("gguf: key %q has type %s, want an integer", key, describe(v))
}

// Strings returns the array of strings stored under key (shared, do not
// modify).
func (f *File) Strings(key string) ([]string, error) {
	return getAs[[]string](f, key, ValueArray)
}

// Int32s returns the array of int32 stored under key (shared).
func (f *File) Int32s(key string) ([]int32, error) { return getAs[[]int32](f, key, ValueArray) }

// Float32s returns the array of float32 stored under key (shared).
func (f *File) Float32s(key string) ([]float32, error) {
	return getAs[[]float32](f, key, ValueArray)
}

func alignUp(n, align int64) int64 { return (n + align - 1) / align * align }

// decoder reads little-endian GGUF primitives through a buffer, tracking
// the offset so every length can be checked against what remains.
type decoder struct {
	br      *bufio.Reader
	off     int64
	size    int64
	scratch []byte
}

func (d *decoder) remaining() int64 { return d.size - d.off }

// bytes returns the next n bytes; the slice is valid until the next read.
func (d *decoder) bytes(n int, what string) ([]byte, error) {
	if int64(n) > d.remaining() {
		return nil, fmt.Errorf("unexpected end of file reading %s (%d bytes at offset %d, %d remain): %w",
			what, n, d.off, d.remaining(), io.ErrUnexpectedEOF)
	}
	var b []byte
	var err error
	if n <= d.br.Size() {
		b, err = d.br.Peek(n)
		if err == nil {
			_, err = d.br.Discard(n)
		}
	} else {
		// Read big values in chunks so memory grows only with bytes that
		// are really there, even if the size passed to Read was a lie.
		b = d.scratch[:0]
		for len(b) < n && err == nil {
			k := min(n-len(b), 1<<20)
			b = slices.Grow(b, k)
			var m int
			m, err = io.ReadFull(d.br, b[len(b):len(b)+k])
			b = b[:len(b)+m]
		}
		d.scratch = b
	}
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("reading %s at offset %d: %w", what, d.off, err)
	}
	d.off += int64(n)
	return b, nil
}

func (d *decoder) u8(what string) (uint8, error) {
	b, err := d.bytes(1, what)
	if err != nil {
		return 0, err
	}
	return b[0], nil
}

func (d *decoder) u16(what string) (uint16, error) {
	b, err := d.bytes(2, what)
	if err != nil {
		return 0, err
	}
	return uint16(b[0]) | uint16(b[1])<<8, nil
}

func (d *decoder) u32(what string) (uint32, error) {
	b, err := d.bytes(4, what)
	if err != nil {
		return 0, err
	}
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24, nil
}

func (d *decoder) u64(what string) (uint64, error) {
	b, err := d.bytes(8, what)
	if err != nil {
		return 0, err
	}
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56, nil
}

func (d *decoder) str(what string) (string, error) {
	n, err := d.u64(what + " length")
	if err != nil {
		return "", err
	}
	if n > uint64(d.remaining()) {
		return "", fmt.Errorf("%s length %d at offset %d exceeds the %d bytes remaining in the file", what, n, d.off-8, d.remaining())
	}
	b, err := d.bytes(int(n), what)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

func (d *decoder) boolean() (bool, error) {
	b, err := d.u8("bool")
	if err != nil {
		return false, err
	}
	if b > 1 {
		return false, fmt.Errorf("invalid bool byte %d at offset %d", b, d.off-1)
	}
	return b == 1, nil
}

// value decodes a value of type t; depth counts enclosing arrays.
func (d *decoder) value(t ValueType, depth int) (Value, error) {
	switch t {
	case ValueUint8:
		x, err := d.u8("uint8")
		return Uint8(x), err
	case ValueInt8:
		x, err := d.u8("int8")
		return Int8(int8(x)), err
	case ValueUint16:
		x, err := d.u16("uint16")
		return Uint16(x), err
	case ValueInt16:
		x, err := d.u16("int16")
		return Int16(int16(x)), err
	case ValueUint32:
		x, err := d.u32("uint32")
		return Uint32(x), err
	case ValueInt32:
		x, err := d.u32("int32")
		return Int32(int32(x)), err
	case ValueFloat32:
		x, err := d.u32("float32")
		return Float32(math.Float32frombits(x)), err
	case ValueBool:
		x, err := d.boolean()
		return Bool(x), err
	case ValueString:
		x, err := d.str("string")
		return String(x), err
	case ValueUint64:
		x, err := d.u64("uint64")
		return Uint64(x), err
	case ValueInt64:
		x, err := d.u64("int64")
		return Int64(int64(x)), err
	case ValueFloat64:
		x, err := d.u64("float64")
		return Float64(math.Float64frombits(x)), err
	case ValueArray:
		return d.array(depth + 1)
	}
	return Value{}, fmt.Errorf("invalid value type %d at offset %d", uint32(t), d.off-4)
}

func (d *decoder) array(depth int) (Value, error) {
	et, err := d.u32("array element type")
	if err != nil {
		return Value{}, err
	}
	elem := ValueType(et)
	if !elem.valid() {
		return Value{}, fmt.Errorf("invalid array element type %d at offset %d", et, d.off-4)
	}
	if elem == ValueArray && depth >= maxArrayDepth {
		return Value{}, fmt.Errorf("arrays nested deeper than %d levels", maxArrayDepth)
	}
	n64, err := d.u64("array length")
	if err != nil {
		return Value{}, err
	}
	if n64 > uint64(d.remaining()/elem.minSize()) {
		return Value{}, fmt.Errorf("array of %d %s at offset %d cannot fit in the %d bytes remaining in the file",
			n64, elem, d.off-8, d.remaining())
	}
	n := int(n64)
	switch elem {
	case ValueUint8:
		b, err := d.bytes(n, "uint8 array")
		if err != nil {
			return Value{}, err
		}
		return Array(bytes.Clone(b)), nil
	case ValueInt8:
		return readArray(n, func() (int8, error) { x, err := d.u8("int8"); return int8(x), err })
	case ValueUint16:
		return readArray(n, func() (uint16, error) { return d.u16("uint16") })
	case ValueInt16:
		return readArray(n, func() (int16, error) { x, err := d.u16("int16"); return int16(x), err })
	case ValueUint32:
		return readArray(n, func() (uint32, error) { return d.u32("uint32") })
	case ValueInt32:
		return readArray(n, func() (int32, error) { x, err := d.u32("int32"); return int32(x), err })
	case ValueFloat32:
		return readArray(n, func() (float32, error) {
			x, err := d.u32("float32")
			return math.Float32frombits(x), err
		})
	case ValueBool:
		return readArray(n, d.boolean)
	case ValueString:
		return d.strings(n)
	case ValueUint64:
		return readArray(n, func() (uint64, error) { return d.u64("uint64") })
	case ValueInt64:
		return readArray(n, func() (int64, error) { x, err := d.u64("int64"); return int64(x), err })
	case ValueFloat64:
		return readArray(n, func() (float64, error) {
			x, err := d.u64("float64")
			return math.Float64frombits(x), err
		})
	default: // ValueArray: preallocate little, nested claims multiply
		return readArrayCap(n, 1<<10, func() (Value, error) { return d.array(depth + 1) })
	}
}

// strings reads an array of n strings into one backing string, which
// turns the ~400K allocations of a large vocabulary into a few.
func (d *decoder) strings(n int) (Value, error) {
	ends := make([]int, 0, min(n, 1<<20))
	// Tokens and merges average well under 16 bytes.
	arena := make([]byte, 0, min(int64(16*n), d.remaining(), 64<<20))
	for i := range n {
		l, err := d.u64("string length")
		if err != nil {
			return Value{}, fmt.Errorf("array element %d: %w", i, err)
		}
		if l > uint64(d.remaining()) {
			return Value{}, fmt.Errorf("array element %d: string length %d at offset %d exceeds the %d bytes remaining in the file",
				i, l, d.off-8, d.remaining())
		}
		b, err := d.bytes(int(l), "string")
		if err != nil {
			return Value{}, fmt.Errorf("array element %d: %w", i, err)
		}
		arena = append(arena, b...)
		ends = append(ends, len(arena))
	}
	all := string(arena)
	out := make([]string, n)
	start := 0
	for i, end := range ends {
		out[i] = all[start:end]
		start = end
	}
	return Array(out), nil
}

func readArray[T Elem](n int, next func() (T, error)) (Value, error) {
	return readArrayCap(n, 1<<20, next)
}

// readArrayCap reads n elements, preallocating at most maxCap of them: the
// rest grows with elements really read.
func readArrayCap[T Elem](n, maxCap int, next func() (T, error)) (Value, error) {
	a := make([]T, 0, min(n, maxCap))
	for i := range n {
		x, err := next()
		if err != nil {
			return Value{}, fmt.Errorf("array element %d: %w", i, err)
		}
		a = append(a, x)
	}
	return Array(a), nil
}

func (d *decoder) tensorInfo() (TensorInfo, error) {
	var ti TensorInfo
	name, err := d.str("tensor name")
	if err != nil {
		return ti, err
	}
	if name == "" {
		return ti, errors.New("empty tensor name")
	}
	ti.Name = name
	if len(name) > maxNameLen {
		return ti, fmt.Errorf("name is %d bytes long, ggml allows at most %d", len(name), maxNameLen)
	}
	nDims, err := d.u32("dimension count")
	if err != nil {
		return ti, err
	}
	if nDims == 0 || nDims > MaxDims {
		return ti, fmt.Errorf("has %d dimensions, want 1 to %d", nDims, MaxDims)
	}
	ti.Shape = make([]int64, nDims)
	for i := range ti.Shape {
		x, err := d.u64("dimension")
		if err != nil {
			return ti, err
		}
		if int64(x) <= 0 {
			return ti, fmt.Errorf("dimension %d is %d, must be positive", i, int64(x))
		}
		ti.Shape[i] = int64(x)
	}
	t, err := d.u32("tensor type")
	if err != nil {
		return ti, err
	}
	ti.Type = TensorType(t)
	if _, err := tensorSize(ti.Type, ti.Shape); err != nil {
		return ti, err
	}
	off, err := d.u64("tensor offset")
	if err != nil {
		return ti, err
	}
	if off > math.MaxInt64 {
		return ti, fmt.Errorf("offset %d out of range", off)
	}
	ti.Offset = int64(off)
	return ti, nil
}
