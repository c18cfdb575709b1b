// Package synth writes random-weight models with the shapes of real llama, qwen2, mistral and
// bert models (Shapes) and a real tokenizer copied from one of llama.cpp's vocab-only GGUF
// files, for tests, benchmarks and examples that need no downloads.
package synth

import (
	"fmt"
	"github.com/llamago/llamago/llama/gguf"
	"io"
	"runtime"
	"strings"
	"sync"
)

// Options configures a synthetic model.
type Options struct {
	Shape     string // a name from Shapes()
	VocabPath string // vocab GGUF whose tokenizer.* keys are copied (required)
	// Type is the type of 2-D weight matrices: TypeF32 (the zero value),
	// TypeF16, TypeBF16 or TypeQ8_0. Norms and biases are always F32.
	Type gguf.TensorType
	Seed uint64
	// Workers is the number of goroutines generating weights; 0 means
	// min(GOMAXPROCS, 4). The output does not depend on it.
	Workers int
}

// synthStd is the standard deviation of synthetic weights and biases, the
// usual initialiser scale of transformer weights.
const synthStd = 0.02

// synthChunk is the number of elements generated per work item. The output
// depends on it (each chunk has its own random stream), so it is fixed. It
// is a multiple of the Q8_0 block size.
const synthChunk = 1 << 18

// WriteFile writes a synthetic model to path, through a temporary
// file in the same directory that is renamed into place on success.
func WriteFile(path string, opts Options) error {
	return writeFileAtomic(path, func(w io.Writer) error { return Write(w, opts) })
}

// Write streams a model with the named shape to w: the tokenizer
// is copied from opts.VocabPath, norm weights are 1, other weights and
// biases are random with mean 0 and standard deviation 0.02. The same
// options always produce the same bytes.
//
// The values come from a sum of four uniform variables (Irwin-Hall), a
// close, cheap approximation of a normal distribution that is bounded at
// ±3.46σ and computed with integer arithmetic, so files do not depend on
// the Go version or the platform.
func Write(w io.Writer, opts Options) error {
	meta, tensors, err := synthLayout(opts)
	if err != nil {
		return err
	}
	infos := make([]gguf.TensorInfo, len(tensors))
	for i, t := range tensors {
		infos[i] = t.TensorInfo
	}
	gw, err := gguf.NewWriter(w, meta, infos)
	if err != nil {
		return err
	}
	workers := opts.Workers
	if workers <= 0 {
		workers = min(runtime.GOMAXPROCS(0), 4)
	}
	if err := generate(gw, tensors, opts.Seed, workers); err != nil {
		return err
	}
	return gw.Close()
}

// synthLayout builds the metadata and tensor list of a synthetic model.
func synthLayout(opts Options) ([]gguf.KV, []synthTensor, error) {
	shape, err := ShapeByName(opts.Shape)
	if err != nil {
		return nil, nil, err
	}
	ft, ok := fileTypeFor(opts.Type)
	if !ok {
		return nil, nil, fmt.Errorf("synth: synthetic weights of type %s are not supported (use f32, f16, bf16 or q8_0)", opts.Type)
	}
	if opts.VocabPath == "" {
		return nil, nil, fmt.Errorf("synth: Options.VocabPath is required (shape %s uses llama.cpp's models/%s)", shape.Name, shape.VocabFile())
	}
	tok, nVocab, err := readTokenizer(opts.VocabPath)
	if err != nil {
		return nil, nil, err
	}
	tensors, err := shape.tensors(nVocab, opts.Type)
	if err != nil {
		return nil, nil, err
	}
	return append(shape.metadata(nVocab, ft), tok...), tensors, nil
}

// readTokenizer returns every tokenizer.* entry of a vocab GGUF and the
// number of tokens.
func readTokenizer(path string) ([]gguf.KV, int, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, 0, fmt.Errorf("synth: reading vocab: %w", err)
	}
	defer f.Close()
	tokens, err := f.Strings("tokenizer.ggml.tokens")
	if err != nil {
		return nil, 0, fmt.Errorf("synth: vocab %s: %w", path, err)
	}
	if len(tokens) == 0 {
		return nil, 0, fmt.Errorf("synth: vocab %s has no tokens", path)
	}
	var kv []gguf.KV
	for _, e := range f.Metadata {
		if strings.HasPrefix(e.Key, "tokenizer.") {
			kv = append(kv, e)
		}
	}
	return kv, len(tokens), nil
}

// chunk is one unit of generated tensor data.
type chunk struct {
	tensor int
	index  int64 // chunk number within the tensor
	n      int   // elements
	data   []byte
	err    error
	done   chan struct{}
}

// generate produces the tensor data in parallel and writes it in order.
// Each chunk's values depend only on (seed, tensor, chunk index), so the
// bytes are the same for any number of workers.
func generate(w io.Writer, tensors []synthTensor, seed uint64, workers int) error {
	jobs := make(chan *chunk)
	order := make(chan *chunk, 2*workers) // bounds the chunks in flight
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(stop)

	pool := sync.Pool{New: func() any { return new([]byte) }}
	wg.Go(func() {
		defer close(order)
		defer close(jobs)
		for ti, t := range tensors {
			total := t.Elements()
			for i := int64(0); i*synthChunk < total; i++ {
				c := &chunk{tensor: ti, index: i, n: int(min(synthChunk, total-i*synthChunk)), done: make(chan struct{})}
				select {
				case order <- c:
				case <-stop:
					return
				}
				select {
				case jobs <- c:
				case <-stop:
					return
				}
			}
		}
	})
	for range workers {
		wg.Go(func() {
			vals := make([]float32, synthChunk)
			for c := range jobs {
				t := tensors[c.tensor]
				buf := pool.Get().(*[]byte)
				c.data, c.err = fillChunk((*buf)[:0], vals[:c.n], t, seed, c)
				close(c.done)
			}
		})
	}
	for c := range order {
		<-c.done
		if c.err != nil {
			return c.err
		}
		if _, err := w.Write(c.data); err != nil {
			return err
		}
		pool.Put(&c.data)
	}
	return nil
}

func fillChunk(dst []byte, vals []float32, t synthTensor, seed uint64, c *chunk) ([]byte, error) {
	switch t.role {
	case roleNorm:
		for i := range vals {
			vals[i] = 1
		}
	default:
		fillNormal(vals, chunkSeed(seed, c.tensor, c.index), synthStd)
	}
	out, err := gguf.Encode(dst, t.Type, vals)
	if err != nil {
		return nil, fmt.Errorf("synth: tensor %s: %w", t.Name, err)
	}
	return out, nil
}

// mix64 is the SplitMix64 finaliser, a strong 64-bit mixing function.
func mix64(z uint64) uint64 {
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// chunkSeed derives an independent stream seed per (seed, tensor, chunk).
func chunkSeed(seed uint64, tensor int, index int64) uint64 {
	h := mix64(seed ^ 0x6c6c616d61676f00) // "llamago"
	h = mix64(h + uint64(tensor)*0x9e3779b97f4a7c15)
	return mix64(h ^ uint64(index)*0xd1b54a32d192ed03)
}

// fillNormal fills dst with approximately normal values of mean 0 and the
// given standard deviation: the sum of four 16-bit uniforms from one
// SplitMix64 output has variance 4·(2¹⁶)²/12, rescaled to std.
func fillNormal(dst []float32, state uint64, std float32) {
	const sqrt3 = 1.7320508075688772
	scale := std * (sqrt3 / 65536)
	for i := range dst {
		state += 0x9e3779b97f4a7c15
		z := mix64(state)
		sum := int32(z&0xffff) + int32(z>>16&0xffff) + int32(z>>32&0xffff) + int32(z>>48) - 2*65535
		dst[i] = float32(sum) * scale
	}
}

// fileTypeFor is the general.file_type a converter writes when 2-D weights
// have type t.
func fileTypeFor(t gguf.TensorType) (gguf.FileType, bool) {
	switch t {
	case gguf.TypeF32:
		return gguf.FileTypeAllF32, true
	case gguf.TypeF16:
		return gguf.FileTypeMostlyF16, true
	case gguf.TypeBF16:
		return gguf.FileTypeMostlyBF16, true
	case gguf.TypeQ8_0:
		return gguf.FileTypeMostlyQ8_0, true
	}
	return 0, false
}
