package synth

import (
	"github.com/llamago/llamago/llama/gguf"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// BenchmarkReadMetadata8B parses the header, metadata (128K-token vocab with
// 280K merges) and 291 tensor infos of a Llama 3 8B F16 file. The file is
// sparse: the header is real, the 16 GB of data are a hole.
func BenchmarkReadMetadata8B(b *testing.B) {
	meta, tensors, err := synthLayout(Options{Shape: "llama3-8b", VocabPath: vocabFor(b, "llama3-8b"), Type: gguf.TypeF16})
	require.NoError(b, err)
	infos := make([]gguf.TensorInfo, len(tensors))
	for i, t := range tensors {
		infos[i] = t.TensorInfo
	}
	p := filepath.Join(b.TempDir(), "llama3-8b.gguf")
	fh, err := os.Create(p)
	require.NoError(b, err)
	w, err := gguf.NewWriter(fh, meta, infos)
	require.NoError(b, err)
	require.NoError(b, fh.Truncate(w.Size()))
	require.NoError(b, fh.Close())
	b.ReportMetric(float64(w.DataOffset()), "header-bytes")
	b.ResetTimer()
	for b.Loop() {
		f, err := gguf.Open(p)
		if err != nil {
			b.Fatal(err)
		}
		if len(f.Tensors) != 291 {
			b.Fatal(len(f.Tensors))
		}
		f.Close()
	}
}

// BenchmarkWriteSynthetic measures synthetic weight generation for the
// llama3.2-1b shape in F16 (2.5 GB per op, discarded).
func BenchmarkWriteSynthetic(b *testing.B) {
	for _, typ := range []gguf.TensorType{gguf.TypeF16, gguf.TypeQ8_0} {
		b.Run(typ.String(), func(b *testing.B) {
			opts := Options{Shape: "llama3.2-1b", VocabPath: vocabFor(b, "llama3.2-1b"), Type: typ, Seed: 1}
			var n countWriter
			require.NoError(b, Write(&n, opts))
			b.SetBytes(int64(n))
			b.ResetTimer()
			for b.Loop() {
				if err := Write(io.Discard, opts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) { *c += countWriter(len(p)); return len(p), nil }
