package gguf_test

import (
	"bytes"
	"fmt"
	"io"
	"log"

	"github.com/llamago/llamago/llama/gguf"
)

func Example() {
	// Write a file with two metadata entries and one F16 tensor...
	var buf bytes.Buffer
	w, err := gguf.NewWriter(&buf, []gguf.KV{
		{Key: "general.architecture", Value: gguf.String("demo")},
		{Key: "demo.sizes", Value: gguf.Array([]uint32{2, 3})},
	}, []gguf.TensorInfo{
		{Name: "weight", Type: gguf.TypeF16, Shape: []int64{3, 2}}, // ggml order: 2 rows of 3
	})
	if err != nil {
		log.Fatal(err)
	}
	data, _ := gguf.Encode(nil, gguf.TypeF16, []float32{1, 2, 3, 4, 5, 6})
	if err := w.WriteTensor("weight", data); err != nil {
		log.Fatal(err)
	}
	if err := w.Close(); err != nil {
		log.Fatal(err)
	}

	// ...and read it back.
	f, err := gguf.Read(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		log.Fatal(err)
	}
	arch, _ := f.String("general.architecture")
	sizes, _ := f.Lookup("demo.sizes")
	fmt.Println(arch, sizes.Any(), f.Alignment, f.DataOffset)
	ti, _ := f.Tensor("weight")
	r, _ := f.TensorData("weight")
	raw, _ := io.ReadAll(r)
	vals, _ := gguf.Decode(nil, ti.Type, raw)
	fmt.Println(ti.Name, ti.Type, ti.Shape, ti.Size(), vals)
	// Output:
	// demo [2 3] 32 160
	// weight f16 [3 2] 12 [1 2 3 4 5 6]
}
