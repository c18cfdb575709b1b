package gguf

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzRead feeds arbitrary bytes to the reader: it must return an error
// or a File whose tensors all lie inside the input, never panic or
// allocate more than the input justifies.
func FuzzRead(f *testing.F) {
	valid := smallValidFile(f)
	f.Add(valid)
	for _, n := range []int{0, 4, 8, 16, 24, 40, 100, len(valid) / 2, len(valid) - 40, len(valid) - 1} {
		f.Add(valid[:n])
	}
	f.Add(writeGGUF(f, []KV{{KeyAlignment, Uint32(64)}, {"n", nest(3)}},
		[]TensorInfo{{Name: "w", Type: TypeF16, Shape: []int64{4, 4}}}, patternData))
	bad, _ := filepath.Glob(filepath.Join("testdata", "bad", "*.gguf"))
	for _, p := range bad {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Read(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "gguf: ") {
				t.Fatalf("error without prefix: %v", err)
			}
			return
		}
		for _, ti := range file.Tensors {
			r, err := file.TensorData(ti.Name)
			if err != nil {
				t.Fatal(err)
			}
			n, err := io.Copy(io.Discard, r)
			if err != nil || n != ti.Size() {
				t.Fatalf("tensor %q: read %d of %d bytes: %v", ti.Name, n, ti.Size(), err)
			}
		}
		// What was read can be written again and reads back the same.
		var buf bytes.Buffer
		w, err := NewWriter(&buf, file.Metadata, file.Tensors)
		if err != nil {
			t.Fatalf("rewriting a valid file: %v", err)
		}
		for _, ti := range w.Tensors() {
			if err := w.WriteTensor(ti.Name, make([]byte, ti.Size())); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		again, err := Read(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
		if err != nil {
			t.Fatalf("reading a rewritten file: %v", err)
		}
		if len(again.Metadata) != len(file.Metadata) || len(again.Tensors) != len(file.Tensors) {
			t.Fatal("rewritten file differs")
		}
	})
}
