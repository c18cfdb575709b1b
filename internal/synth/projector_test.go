package synth

import (
	"crypto/sha256"
	"fmt"
	"github.com/llamago/llamago/llama/gguf"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// wantProjectorTensors lists the tensors clip.cpp's clip_model_loader::load_tensors
// and the type's graph (models/llava.cpp, models/qwen2vl.cpp,
// models/whisper-enc.cpp) use, with their shapes in ggml order, for the default
// options of each type (encoder width 64, feed-forward 128, 2 layers, text
// width 64).
func wantProjectorTensors(typ string) map[string][]int64 {
	want := map[string][]int64{}
	prefix := "v"
	if typ == ProjectorQwen2A {
		prefix = "a"
	}
	for i := range 2 {
		blk := fmt.Sprintf("%s.blk.%d.", prefix, i)
		for _, m := range []string{"attn_q", "attn_k", "attn_v", "attn_out"} {
			want[blk+m+".weight"] = []int64{64, 64}
			if typ != ProjectorQwen2A || m != "attn_k" { // the whisper graph asserts no key bias
				want[blk+m+".bias"] = []int64{64}
			}
		}
		for _, n := range []string{"ln1", "ln2"} {
			want[blk+n+".weight"] = []int64{64}
			want[blk+n+".bias"] = []int64{64}
		}
		want[blk+"ffn_up.weight"] = []int64{64, 128}
		want[blk+"ffn_up.bias"] = []int64{128}
		want[blk+"ffn_down.weight"] = []int64{128, 64}
		want[blk+"ffn_down.bias"] = []int64{64}
	}
	switch typ {
	case ProjectorMLP:
		want["v.patch_embd.weight"] = []int64{8, 8, 3, 64}
		want["v.class_embd"] = []int64{64}
		want["v.position_embd.weight"] = []int64{64, 8*8 + 1} // patches and the class token
		want["v.pre_ln.weight"] = []int64{64}
		want["v.pre_ln.bias"] = []int64{64}
		want["mm.0.weight"] = []int64{64, 64}
		want["mm.0.bias"] = []int64{64}
		want["mm.2.weight"] = []int64{64, 64}
		want["mm.2.bias"] = []int64{64}
	case ProjectorQwen2VL:
		want["v.patch_embd.weight"] = []int64{14, 14, 3, 64}
		want["v.patch_embd.weight.1"] = []int64{14, 14, 3, 64}
		want["v.post_ln.weight"] = []int64{64}
		want["v.post_ln.bias"] = []int64{64}
		want["mm.0.weight"] = []int64{256, 256} // 2x2 merged patches
		want["mm.0.bias"] = []int64{256}
		want["mm.2.weight"] = []int64{256, 64}
		want["mm.2.bias"] = []int64{64}
	case ProjectorQwen2A:
		want["a.conv1d.1.weight"] = []int64{3, 128, 64} // kernel 3, 128 mel bins in
		want["a.conv1d.1.bias"] = []int64{1, 64}        // broadcast over frames
		want["a.conv1d.2.weight"] = []int64{3, 64, 64}
		want["a.conv1d.2.bias"] = []int64{1, 64}
		want["a.position_embd.weight"] = []int64{64, 1500} // 3000 frames after the stride-2 conv
		want["a.post_ln.weight"] = []int64{64}
		want["a.post_ln.bias"] = []int64{64}
		want["mm.a.fc.weight"] = []int64{64, 64}
		want["mm.a.fc.bias"] = []int64{64}
	}
	return want
}

func TestProjector(t *testing.T) {
	for _, tc := range []struct {
		typ     string
		weights gguf.TensorType
		image   uint32
		eps     float32
	}{
		{ProjectorMLP, gguf.TypeF16, 64, 1e-5},
		{ProjectorQwen2VL, gguf.TypeF32, 224, 1e-6},
		{ProjectorQwen2A, gguf.TypeF16, 0, 1e-5},
	} {
		t.Run(tc.typ, func(t *testing.T) {
			t.Parallel()
			p := filepath.Join(t.TempDir(), "mmproj.gguf")
			o := ProjectorOptions{Type: tc.typ, Weights: tc.weights, Seed: 3}
			require.NoError(t, WriteProjectorFile(p, o))
			f, err := gguf.Open(p)
			require.NoError(t, err)
			defer f.Close()

			// The keys clip_model_loader::load_hparams requires, and those of the type.
			str := func(k string) string { v, err := f.String(k); assert.NoError(t, err, k); return v }
			u32 := func(k string) uint32 { v, err := f.Uint32(k); assert.NoError(t, err, k); return v }
			assert.Equal(t, "clip", str("general.architecture"))
			assert.Equal(t, "mmproj", str("general.type"))
			assert.Equal(t, tc.typ, str("clip.projector_type"))
			audio := tc.typ == ProjectorQwen2A
			modality, other := "vision", "audio"
			if audio {
				modality, other = other, modality
			}
			has, err := f.Bool("clip.has_" + modality + "_encoder")
			assert.NoError(t, err)
			assert.True(t, has)
			_, ok := f.Lookup("clip.has_" + other + "_encoder")
			assert.False(t, ok, "one encoder")
			for _, kv := range f.Metadata {
				assert.False(t, strings.HasPrefix(kv.Key, "clip."+other+"."), kv.Key)
			}
			text, err := ShapeByName(DefaultProjectorTextShape)
			require.NoError(t, err)
			key := func(k string) string { return "clip." + modality + "." + k }
			assert.Equal(t, uint32(text.Embd), u32(key("projection_dim")), "the text model's n_embd")
			assert.Equal(t, uint32(64), u32(key("embedding_length")))
			assert.Equal(t, uint32(128), u32(key("feed_forward_length")))
			assert.Equal(t, uint32(2), u32(key("block_count")))
			assert.Equal(t, uint32(4), u32(key("attention.head_count")))
			eps, err := f.Float32(key("attention.layer_norm_epsilon"))
			assert.NoError(t, err)
			assert.Equal(t, tc.eps, eps)
			if audio {
				assert.Equal(t, uint32(128), u32("clip.audio.num_mel_bins"))
			} else {
				assert.Equal(t, tc.image, u32("clip.vision.image_size"))
				for _, k := range []string{"clip.vision.image_mean", "clip.vision.image_std"} {
					v, err := f.Float32s(k)
					assert.NoError(t, err, k)
					assert.Len(t, v, 3, k)
				}
			}
			ft, err := f.FileType()
			assert.NoError(t, err)
			wantFT, _ := fileTypeFor(tc.weights)
			assert.Equal(t, wantFT, ft)
			gelu, err := f.Bool("clip.use_gelu")
			if tc.typ == ProjectorMLP {
				assert.NoError(t, err)
				assert.False(t, gelu, "CLIP's quick GELU")
			} else {
				// Qwen2-VL's converter writes no activation (quick GELU);
				// qwen2a's is GELU (erf) whatever the keys say.
				assert.Error(t, err, "no clip.use_gelu")
			}
			_, ok = f.Lookup("clip.vision.n_wa_pattern")
			assert.False(t, ok, "window attention is Qwen2.5-VL's")
			_, ok = f.Lookup("clip.audio.projector.stack_factor")
			assert.False(t, ok, "frame stacking is Ultravox's and Voxtral's")

			want := wantProjectorTensors(tc.typ)
			assert.Len(t, f.Tensors, len(want))
			listed, err := ProjectorTensors(o)
			require.NoError(t, err)
			assert.Len(t, listed, len(f.Tensors))
			for _, ti := range f.Tensors {
				shape, ok := want[ti.Name]
				if !assert.True(t, ok, "unexpected tensor %s", ti.Name) {
					continue
				}
				assert.Equal(t, shape, ti.Shape, ti.Name)
				switch {
				case len(shape) == 1 || strings.HasSuffix(ti.Name, ".bias"):
					assert.Equal(t, gguf.TypeF32, ti.Type, "%s: norms, biases and the class embedding stay f32", ti.Name)
				case strings.HasPrefix(ti.Name, "a.conv1d."):
					assert.Equal(t, gguf.TypeF16, ti.Type, "%s: the converter forces convolution kernels to f16", ti.Name)
				case ti.Name == "a.position_embd.weight":
					assert.Equal(t, gguf.TypeF32, ti.Type, "%s: ggml's CPU add takes no f16 operand", ti.Name)
				default:
					assert.Equal(t, tc.weights, ti.Type, ti.Name)
				}
				vals := tensorValues(t, f, ti)
				switch {
				case strings.HasSuffix(ti.Name, "ln1.weight"), strings.HasSuffix(ti.Name, "ln2.weight"),
					strings.HasSuffix(ti.Name, "_ln.weight"):
					for _, x := range vals {
						if x != 1 {
							assert.Failf(t, "norm weights must be 1", "%s has %g", ti.Name, x)
							break
						}
					}
				case len(vals) >= 4096:
					mean, std := meanStd(vals)
					assert.InDelta(t, 0, mean, 0.002, "%s mean", ti.Name)
					assert.InEpsilon(t, synthStd, std, 0.05, "%s std", ti.Name)
				default:
					_, std := meanStd(vals)
					assert.Greater(t, std, 0.005, ti.Name)
				}
			}
		})
	}
}

// TestProjectorImageLayout checks the port of mtmd's resizing. The token
// counts of 640x488, 300x1000, 10x10 and 4000x3000 are those llama-mtmd-cli
// reported (decoding image batch, n_tokens_batch) for the default projectors.
func TestProjectorImageLayout(t *testing.T) {
	mlp := ProjectorOptions{}
	for _, size := range [][2]int{{640, 488}, {1, 1}, {4000, 300}} {
		l, err := mlp.ImageLayout(size[0], size[1])
		require.NoError(t, err)
		assert.Equal(t, ImageLayout{Width: 64, Height: 64, Tokens: 64, X: 64, Y: 1, Pos: 64}, l, "fixed size: %v", size)
	}

	qwen := ProjectorOptions{Type: ProjectorQwen2VL}
	for _, tc := range []struct {
		w, h int
		want ImageLayout
	}{
		// tools/mtmd/test-1.jpeg: 640/28 and 488/28 round to 23 and 17.
		{640, 488, ImageLayout{Width: 644, Height: 476, Tokens: 391, X: 23, Y: 17, Pos: 23}},
		// Portrait: 300/28 and 1000/28 round to 11 and 36.
		{300, 1000, ImageLayout{Width: 308, Height: 1008, Tokens: 396, X: 11, Y: 36, Pos: 36}},
		// Below 8 tokens: scaled up to at least 8·28² pixels.
		{10, 10, ImageLayout{Width: 84, Height: 84, Tokens: 9, X: 3, Y: 3, Pos: 3}},
		// Above 4096 tokens: scaled down below 4096·28² pixels.
		{4000, 3000, ImageLayout{Width: 2044, Height: 1540, Tokens: 73 * 55, X: 73, Y: 55, Pos: 73}},
	} {
		l, err := qwen.ImageLayout(tc.w, tc.h)
		require.NoError(t, err)
		assert.Equal(t, tc.want, l, "%dx%d", tc.w, tc.h)
		assert.GreaterOrEqual(t, l.Tokens, 8)
		assert.LessOrEqual(t, l.Tokens, 4096)
	}

	_, err := qwen.ImageLayout(0, 10)
	assert.ErrorContains(t, err, "must be positive")
	_, err = ProjectorOptions{Type: "nope"}.ImageLayout(10, 10)
	assert.ErrorContains(t, err, "unknown projector type")
	_, err = ProjectorOptions{Type: ProjectorQwen2A}.ImageLayout(10, 10)
	assert.ErrorContains(t, err, "is an audio projector")
}

// TestProjectorAudioLayout checks the port of mtmd's Whisper windowing. Each
// count is what llama-mtmd-cli reported (one "decoding audio batch,
// n_tokens_batch = 750" per chunk) for a 16 kHz WAV of that many samples
// with the default qwen2a projector; tools/mtmd/test-2.mp3 made 750 too.
func TestProjectorAudioLayout(t *testing.T) {
	o := ProjectorOptions{Type: ProjectorQwen2A}
	for _, tc := range []struct{ samples, chunks int }{
		{1, 1},
		{100, 1}, // padded to half an FFT window
		{5 * AudioSampleRate, 1},
		{479839, 1}, // 2999 frames and the 3001 of the silence: one window
		{479840, 2}, // 6000 frames: a second, almost silent window
		{960001, 3},
	} {
		l, err := o.AudioLayout(tc.samples)
		require.NoError(t, err)
		assert.Equal(t, AudioLayout{Chunks: tc.chunks, ChunkTokens: 750, Tokens: 750 * tc.chunks}, l, "%d samples", tc.samples)
	}
	// The window does not depend on the encoder's size.
	l, err := ProjectorOptions{Type: ProjectorQwen2A, MelBins: 80, Embd: 32, Heads: 2, Layers: 1}.AudioLayout(AudioSampleRate)
	require.NoError(t, err)
	assert.Equal(t, 750, l.Tokens)

	_, err = o.AudioLayout(0)
	assert.ErrorContains(t, err, "must be positive")
	_, err = ProjectorOptions{}.AudioLayout(AudioSampleRate)
	assert.ErrorContains(t, err, "is a vision projector")
	_, err = ProjectorOptions{Type: ProjectorQwen2A, MelBins: 512}.AudioLayout(AudioSampleRate)
	assert.ErrorContains(t, err, "too many")
}

func TestProjectorText(t *testing.T) {
	t.Parallel()
	vocab := vocabFor(t, DefaultProjectorTextShape)
	dir := t.TempDir()

	// mlp pairs with the plain text shape: WriteTextFile is WriteFile.
	mlp := ProjectorOptions{}
	arch, err := mlp.TextArch()
	require.NoError(t, err)
	assert.Equal(t, "qwen2", arch)
	a, b := filepath.Join(dir, "a.gguf"), filepath.Join(dir, "b.gguf")
	require.NoError(t, WriteTextFile(a, mlp, Options{VocabPath: vocab, Type: gguf.TypeF16, Seed: 5}))
	require.NoError(t, WriteFile(b, Options{Shape: DefaultProjectorTextShape, VocabPath: vocab, Type: gguf.TypeF16, Seed: 5}))
	assert.Equal(t, fileHash(t, a), fileHash(t, b))

	// So does qwen2a: audio tokens have ordinary positions.
	audio := ProjectorOptions{Type: ProjectorQwen2A}
	arch, err = audio.TextArch()
	require.NoError(t, err)
	assert.Equal(t, "qwen2", arch)
	c := filepath.Join(dir, "c.gguf")
	require.NoError(t, WriteTextFile(c, audio, Options{VocabPath: vocab, Type: gguf.TypeF16, Seed: 5}))
	assert.Equal(t, fileHash(t, b), fileHash(t, c))

	// qwen2vl_merger needs an M-RoPE text model: the qwen2 shape as qwen2vl.
	qwen := ProjectorOptions{Type: ProjectorQwen2VL}
	arch, err = qwen.TextArch()
	require.NoError(t, err)
	assert.Equal(t, "qwen2vl", arch)
	q := filepath.Join(dir, "q.gguf")
	require.NoError(t, WriteTextFile(q, qwen, Options{Shape: DefaultProjectorTextShape, VocabPath: vocab, Type: gguf.TypeF16, Seed: 5}))
	fq, err := gguf.Open(q)
	require.NoError(t, err)
	defer fq.Close()
	fb, err := gguf.Open(b)
	require.NoError(t, err)
	defer fb.Close()
	s, err := fq.String("general.architecture")
	require.NoError(t, err)
	assert.Equal(t, "qwen2vl", s)
	for _, kv := range fb.Metadata {
		key := kv.Key
		switch {
		case key == "general.architecture":
			continue
		case strings.HasPrefix(key, "qwen2."):
			key = "qwen2vl." + strings.TrimPrefix(key, "qwen2.")
		}
		got, ok := fq.Lookup(key)
		if assert.True(t, ok, key) {
			assert.Equal(t, kv.Value, got, key)
		}
	}
	for _, kv := range fq.Metadata {
		assert.False(t, strings.HasPrefix(kv.Key, "qwen2."), kv.Key)
	}
	sec, err := fq.Int32s("qwen2vl.rope.dimension_sections")
	require.NoError(t, err)
	assert.Equal(t, []int32{2, 3, 3, 0}, sec, "head dimension 16: 8 rotated pairs")
	assert.Equal(t, fb.Tensors, fq.Tensors, "the same tensors as qwen2")
	big, err := ShapeByName("qwen2-7b")
	require.NoError(t, err)
	assert.Equal(t, [4]int32{16, 24, 24, 0}, MRoPESections(big), "Qwen2-VL-7B's sections")

	assert.ErrorContains(t, WriteTextFile(filepath.Join(dir, "x.gguf"), qwen, Options{Shape: "qwen2-7b", VocabPath: vocab}),
		`does not match the projector's "qwen2-tiny"`)
	assert.ErrorContains(t, WriteTextFile(filepath.Join(dir, "x.gguf"), qwen, Options{}), "VocabPath is required")
	assert.NoFileExists(t, filepath.Join(dir, "x.gguf"))
}

func fileHash(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return sha256.Sum256(b)
}

func TestProjectorDeterministic(t *testing.T) {
	hash := func(o ProjectorOptions) [32]byte {
		h := sha256.New()
		require.NoError(t, WriteProjector(h, o))
		return [32]byte(h.Sum(nil))
	}
	for _, typ := range []string{ProjectorMLP, ProjectorQwen2VL, ProjectorQwen2A} {
		a := hash(ProjectorOptions{Type: typ, Seed: 1, Workers: 1})
		assert.Equal(t, a, hash(ProjectorOptions{Type: typ, Seed: 1, Workers: 3}), "the number of workers does not matter")
		assert.NotEqual(t, a, hash(ProjectorOptions{Type: typ, Seed: 2}), "the seed matters")
	}
	// Explicit defaults are the defaults.
	d, err := DefaultProjector(ProjectorQwen2VL)
	require.NoError(t, err)
	d.Seed = 9
	assert.Equal(t, hash(d), hash(ProjectorOptions{Type: ProjectorQwen2VL, Seed: 9}))
	d, err = DefaultProjector(ProjectorQwen2A)
	require.NoError(t, err)
	d.Seed = 9
	assert.Equal(t, hash(d), hash(ProjectorOptions{Type: ProjectorQwen2A, Seed: 9}))
}

func TestProjectorErrors(t *testing.T) {
	for _, tc := range []struct {
		o    ProjectorOptions
		want string
	}{
		{ProjectorOptions{Type: "ldp"}, `unknown projector type "ldp"`},
		{ProjectorOptions{TextShape: "gpt-5"}, `unknown shape "gpt-5"`},
		{ProjectorOptions{TextShape: "bert-tiny"}, "is an encoder"},
		{ProjectorOptions{Type: ProjectorQwen2VL, TextShape: "llama-tiny"}, "pairs with a qwen2 shape"},
		{ProjectorOptions{Embd: -64}, "must not be negative"},
		{ProjectorOptions{ImageSize: -1}, "must not be negative"},
		{ProjectorOptions{Heads: 5}, "not a multiple of 5 heads"},
		{ProjectorOptions{Embd: 48, Heads: 16}, "must be even"},
		{ProjectorOptions{Type: ProjectorQwen2VL, Embd: 72, Heads: 4}, "multiple of 4"},
		{ProjectorOptions{FF: 64}, "must differ from the width"},
		{ProjectorOptions{Layers: 1}, "at least 2 layers"},
		{ProjectorOptions{ImageSize: 60}, "not a multiple of the patch size"},
		{ProjectorOptions{Type: ProjectorQwen2VL, ImageSize: 210}, "not a multiple of twice the patch size"},
		{ProjectorOptions{ImageSize: 8192}, "too large"},
		{ProjectorOptions{Layers: 1000}, "too many"},
		{ProjectorOptions{Weights: gguf.TypeQ8_0}, "not supported"},
		{ProjectorOptions{Type: ProjectorQwen2A, TextShape: "bert-tiny"}, "is an encoder"},
		{ProjectorOptions{Type: ProjectorQwen2A, MelBins: -1}, "must not be negative"},
		{ProjectorOptions{Type: ProjectorQwen2A, ImageSize: 224}, "image and patch sizes must be 0"},
		{ProjectorOptions{Type: ProjectorQwen2A, PatchSize: 14}, "image and patch sizes must be 0"},
		{ProjectorOptions{MelBins: 80}, "mel bins must be 0"},
		{ProjectorOptions{Type: ProjectorQwen2VL, MelBins: 80}, "mel bins must be 0"},
		{ProjectorOptions{Type: ProjectorQwen2A, MelBins: 257}, "at most 256"},
		{ProjectorOptions{Type: ProjectorQwen2A, Heads: 5}, "not a multiple of 5 heads"},
		{ProjectorOptions{Type: ProjectorQwen2A, Layers: 1000}, "too many"},
		{ProjectorOptions{Type: ProjectorQwen2A, Weights: gguf.TypeBF16}, "not supported"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			assert.ErrorContains(t, tc.o.Validate(), tc.want)
			p := filepath.Join(t.TempDir(), "mmproj.gguf")
			assert.ErrorContains(t, WriteProjectorFile(p, tc.o), tc.want)
			assert.NoFileExists(t, p)
			_, err := ProjectorTensors(tc.o)
			assert.ErrorContains(t, err, tc.want)
			_, err = tc.o.TextArch()
			assert.ErrorContains(t, err, tc.want)
		})
	}
	_, err := DefaultProjector("")
	assert.ErrorContains(t, err, "unknown projector type")
	err = WriteProjectorFile(filepath.Join(t.TempDir(), "missing", "mmproj.gguf"), ProjectorOptions{})
	assert.ErrorContains(t, err, "no such file")
	// Each type's defaults are valid.
	for _, typ := range []string{ProjectorMLP, ProjectorQwen2VL, ProjectorQwen2A} {
		d, err := DefaultProjector(typ)
		require.NoError(t, err)
		assert.NoError(t, d.Validate())
	}
	// The vision constraints do not bind the Whisper encoder: no rotary
	// heads, no swapped feed-forward naming, no feature layer to skip.
	for _, o := range []ProjectorOptions{
		{Type: ProjectorQwen2A, FF: 64},
		{Type: ProjectorQwen2A, Embd: 48, Heads: 16},
		{Type: ProjectorQwen2A, Layers: 1},
		{Type: ProjectorQwen2A, MelBins: 1},
		{Type: ProjectorQwen2A, MelBins: 256},
		{Type: ProjectorQwen2A, TextShape: "llama-tiny"},
	} {
		assert.NoError(t, o.Validate(), "%+v", o)
	}
}
