package gguf

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// Version is the GGUF version the Writer produces.
const Version = 3

// Writer streams a GGUF file: NewWriter writes the header, metadata and
// tensor infos at once (sizes are known from the shapes), then the caller
// writes each tensor's bytes in declared order with Write or WriteTensor.
// Padding between tensors is inserted automatically. Close checks that
// every byte was written.
type Writer struct {
	bw        *bufio.Writer
	tensors   []TensorInfo
	sizes     []int64
	alignment int64
	dataStart int64 // absolute offset of the data section
	total     int64 // file size once complete

	cur     int   // tensor being written
	written int64 // bytes of tensor cur written so far
	err     error // sticky
	closed  bool
}

// NewWriter validates meta and tensors, computes tensor offsets (packed in
// order, each aligned to general.alignment or DefaultAlignment) and writes
// everything up to the tensor data to w. The tensors' Offset fields are
// ignored; [Writer.Tensors] returns the computed infos.
func NewWriter(w io.Writer, meta []KV, tensors []TensorInfo) (*Writer, error) {
	gw := &Writer{alignment: DefaultAlignment}
	seen := make(map[string]bool, len(meta))
	for _, kv := range meta {
		if kv.Key == "" {
			return nil, errors.New("gguf: empty metadata key")
		}
		if seen[kv.Key] {
			return nil, fmt.Errorf("gguf: duplicate metadata key %q", kv.Key)
		}
		seen[kv.Key] = true
		if err := kv.Value.check(1); err != nil {
			return nil, fmt.Errorf("gguf: metadata key %q: %w", kv.Key, err)
		}
		if kv.Key == KeyAlignment {
			a, ok := kv.Value.x.(uint32)
			if !ok || a == 0 || a&(a-1) != 0 {
				return nil, fmt.Errorf("gguf: %s must be a uint32 power of two, got %s %v", KeyAlignment, kv.Value.typ, kv.Value.x)
			}
			gw.alignment = int64(a)
		}
	}

	gw.tensors = make([]TensorInfo, len(tensors))
	gw.sizes = make([]int64, len(tensors))
	names := make(map[string]bool, len(tensors))
	var off int64
	for i, ti := range tensors {
		if ti.Name == "" || len(ti.Name) > maxNameLen {
			return nil, fmt.Errorf("gguf: tensor %d: name %q must be 1 to %d bytes", i, ti.Name, maxNameLen)
		}
		if names[ti.Name] {
			return nil, fmt.Errorf("gguf: duplicate tensor name %q", ti.Name)
		}
		names[ti.Name] = true
		size, err := tensorSize(ti.Type, ti.Shape)
		if err != nil {
			return nil, fmt.Errorf("gguf: tensor %q: %w", ti.Name, err)
		}
		ti.Shape = append([]int64(nil), ti.Shape...)
		ti.Offset = off
		gw.tensors[i] = ti
		gw.sizes[i] = size
		if size > math.MaxInt64-off-gw.alignment {
			return nil, fmt.Errorf("gguf: tensor %q: data section overflows", ti.Name)
		}
		off = alignUp(off+size, gw.alignment)
	}

	gw.bw = bufio.NewWriterSize(w, 1<<20)
	e := encoder{w: gw.bw}
	e.raw([]byte(Magic))
	e.u32(Version)
	e.u64(uint64(len(tensors)))
	e.u64(uint64(len(meta)))
	for _, kv := range meta {
		e.str(kv.Key)
		e.u32(uint32(kv.Value.typ))
		e.value(kv.Value)
	}
	for _, ti := range gw.tensors {
		e.str(ti.Name)
		e.u32(uint32(len(ti.Shape)))
		for _, d := range ti.Shape {
			e.u64(uint64(d))
		}
		e.u32(uint32(ti.Type))
		e.u64(uint64(ti.Offset))
	}
	gw.dataStart = alignUp(e.n, gw.alignment)
	gw.total = e.n
	if len(tensors) > 0 {
		// Like llama.cpp's vocab-only files, a file without tensors ends
		// right after its metadata: padding to a large alignment would be
		// bytes for nothing.
		e.pad(gw.alignment)
		gw.total = e.n + off
	}
	if e.err == nil {
		e.err = gw.bw.Flush()
	}
	if e.err != nil {
		return nil, fmt.Errorf("gguf: writing header: %w", e.err)
	}
	return gw, nil
}

// Tensors returns the tensor infos with their computed offsets.
func (w *Writer) Tensors() []TensorInfo { return w.tensors }

// DataOffset returns the absolute offset of the tensor data section (even
// when there are no tensors and the file ends before it).
func (w *Writer) DataOffset() int64 { return w.dataStart }

// Size returns the size of the complete file.
func (w *Writer) Size() int64 { return w.total }

// Write writes tensor data: the bytes of all tensors in declared order,
// in pieces of any size. Writing more than the tensors hold is an error.
func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.closed {
		return 0, errors.New("gguf: write after Close")
	}
	n := 0
	for len(p) > 0 {
		if w.cur >= len(w.tensors) {
			w.err = fmt.Errorf("gguf: %d bytes written past the end of the tensor data", len(p))
			return n, w.err
		}
		k := int(min(int64(len(p)), w.sizes[w.cur]-w.written))
		m, err := w.bw.Write(p[:k])
		n += m
		w.written += int64(m)
		if err != nil {
			w.err = fmt.Errorf("gguf: writing tensor %q: %w", w.tensors[w.cur].Name, err)
			return n, w.err
		}
		p = p[k:]
		if w.written == w.sizes[w.cur] {
			if err := w.finishTensor(); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// WriteTensor writes the whole data of the named tensor, which must be the
// next one in declared order.
func (w *Writer) WriteTensor(name string, data []byte) error {
	if w.err != nil {
		return w.err
	}
	if w.cur >= len(w.tensors) {
		return fmt.Errorf("gguf: WriteTensor(%q): all tensors are already written", name)
	}
	ti := w.tensors[w.cur]
	if ti.Name != name || w.written != 0 {
		return fmt.Errorf("gguf: WriteTensor(%q): next tensor is %q (%d bytes written)", name, ti.Name, w.written)
	}
	if int64(len(data)) != w.sizes[w.cur] {
		return fmt.Errorf("gguf: WriteTensor(%q): got %d bytes, %s %v needs %d", name, len(data), ti.Type, ti.Shape, w.sizes[w.cur])
	}
	_, err := w.Write(data)
	return err
}

// Close flushes the output and reports an error if tensor data is missing.
// It does not close the underlying writer.
func (w *Writer) Close() error {
	if w.closed {
		return w.err
	}
	w.closed = true
	if w.err != nil {
		return w.err
	}
	if w.cur < len(w.tensors) {
		w.err = fmt.Errorf("gguf: closed with tensor %q incomplete (%d of %d bytes), %d tensors pending",
			w.tensors[w.cur].Name, w.written, w.sizes[w.cur], len(w.tensors)-w.cur)
		return w.err
	}
	if err := w.bw.Flush(); err != nil {
		w.err = fmt.Errorf("gguf: %w", err)
	}
	return w.err
}

var zeros [256]byte // alignment padding; alignments above 256 write it repeatedly

// finishTensor pads the finished tensor to the alignment (the last one
// too, as ggml does) and moves to the next.
func (w *Writer) finishTensor() error {
	pad := alignUp(w.sizes[w.cur], w.alignment) - w.sizes[w.cur]
	for pad > 0 {
		k := min(pad, int64(len(zeros)))
		if _, err := w.bw.Write(zeros[:k]); err != nil {
			w.err = fmt.Errorf("gguf: writing padding: %w", err)
			return w.err
		}
		pad -= k
	}
	w.cur++
	w.written = 0
	return nil
}

// encoder writes little-endian GGUF primitives, remembering the first error
// and the byte count.
type encoder struct {
	w   io.Writer
	n   int64
	err error
	buf [8]byte
}

func (e *encoder) raw(b []byte) {
	if e.err != nil {
		return
	}
	n, err := e.w.Write(b)
	e.n += int64(n)
	e.err = err
}

func (e *encoder) u8(x uint8) { e.buf[0] = x; e.raw(e.buf[:1]) }
func (e *encoder) u16(x uint16) {
	binary.LittleEndian.PutUint16(e.buf[:], x)
	e.raw(e.buf[:2])
}
func (e *encoder) u32(x uint32) {
	binary.LittleEndian.PutUint32(e.buf[:], x)
	e.raw(e.buf[:4])
}
func (e *encoder) u64(x uint64) {
	binary.LittleEndian.PutUint64(e.buf[:], x)
	e.raw(e.buf[:8])
}
func (e *encoder) str(s string) {
	e.u64(uint64(len(s)))
	if e.err == nil {
		n, err := io.WriteString(e.w, s)
		e.n += int64(n)
		e.err = err
	}
}
func (e *encoder) boolean(b bool) {
	if b {
		e.u8(1)
	} else {
		e.u8(0)
	}
}

func (e *encoder) pad(align int64) {
	for e.err == nil && e.n%align != 0 {
		e.raw(zeros[:min(alignUp(e.n, align)-e.n, int64(len(zeros)))])
	}
}

// value writes v without its type tag (checked by Value.check).
func (e *encoder) value(v Value) {
	switch x := v.x.(type) {
	case uint8:
		e.u8(x)
	case int8:
		e.u8(uint8(x))
	case uint16:
		e.u16(x)
	case int16:
		e.u16(uint16(x))
	case uint32:
		e.u32(x)
	case int32:
		e.u32(uint32(x))
	case float32:
		e.u32(math.Float32bits(x))
	case bool:
		e.boolean(x)
	case string:
		e.str(x)
	case uint64:
		e.u64(x)
	case int64:
		e.u64(uint64(x))
	case float64:
		e.u64(math.Float64bits(x))
	default:
		elem, _ := v.Elem()
		e.u32(uint32(elem))
		e.u64(uint64(v.Len()))
		switch a := x.(type) {
		case []uint8:
			e.raw(a)
		case []int8:
			writeEach(a, func(x int8) { e.u8(uint8(x)) })
		case []uint16:
			writeEach(a, e.u16)
		case []int16:
			writeEach(a, func(x int16) { e.u16(uint16(x)) })
		case []uint32:
			writeEach(a, e.u32)
		case []int32:
			writeEach(a, func(x int32) { e.u32(uint32(x)) })
		case []float32:
			writeEach(a, func(x float32) { e.u32(math.Float32bits(x)) })
		case []bool:
			writeEach(a, e.boolean)
		case []string:
			writeEach(a, e.str)
		case []uint64:
			writeEach(a, e.u64)
		case []int64:
			writeEach(a, func(x int64) { e.u64(uint64(x)) })
		case []float64:
			writeEach(a, func(x float64) { e.u64(math.Float64bits(x)) })
		case []Value:
			writeEach(a, e.value)
		}
	}
}

func writeEach[T any](a []T, f func(T)) {
	for _, x := range a {
		f(x)
	}
}
