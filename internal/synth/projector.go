package synth

import (
	"errors"
	"fmt"
	"github.com/llamago/llamago/llama/gguf"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// Projector types, the clip.projector_type values of llama.cpp's mtmd
// (tools/mtmd/clip-impl.h) that WriteProjector can synthesize.
const (
	// ProjectorMLP is LLaVA-1.5: a CLIP ViT (class embedding, learned
	// positions, pre-norm) whose second-to-last layer feeds a two-layer GELU
	// MLP. mtmd resizes every image to ImageSize² and makes
	// (ImageSize/PatchSize)² image tokens with ordinary (1-D) positions, so it
	// pairs with any decoder shape (llama or qwen2 architecture).
	ProjectorMLP = "mlp"
	// ProjectorQwen2VL is Qwen2-VL: a ViT with 2-D M-RoPE, two temporal
	// patch embeddings and a merger that folds each 2x2 block of patches
	// into one token. mtmd keeps the image's aspect ratio (dynamic size) and
	// gives image tokens 2-D positions, so the text model must use M-RoPE:
	// WriteTextFile writes the text shape with architecture qwen2vl.
	ProjectorQwen2VL = "qwen2vl_merger"
	// ProjectorQwen2A is Qwen2-Audio, the one audio type: a Whisper encoder
	// (two 1-D convolutions, the second of stride 2, learned positions,
	// pre-norm blocks, a final norm), a 2x average pooling and one linear
	// projection. mtmd turns 16 kHz audio into 128-bin log-mel frames and
	// encodes them in 30-second windows of 3000 frames, each 750 audio tokens
	// with ordinary (1-D) positions (AudioLayout), so it pairs with any
	// decoder shape; its markers <|audio_bos|> and <|audio_eos|> are
	// tokenized as plain text where the vocabulary lacks them. The text
	// context must take a whole window in one batch: llama-mtmd-cli needs
	// -c 1024 or more with qwen2-tiny, whose trained context is 512.
	ProjectorQwen2A = "qwen2a"
)

// DefaultProjectorTextShape is the text shape projectors pair with by
// default: qwen2-tiny, whose qwen2 vocabulary has a ChatML chat template.
const DefaultProjectorTextShape = "qwen2-tiny"

// ProjectorOptions configures a synthetic multimodal projector (an mmproj
// GGUF for llama.cpp's mtmd). Zero sizes take the defaults of the type
// (DefaultProjector); negative sizes are errors.
type ProjectorOptions struct {
	Type string // ProjectorMLP (the zero value), ProjectorQwen2VL or ProjectorQwen2A
	// TextShape is the decoder shape (Shapes) of the language model the
	// projector feeds: its n_embd is the projection dimension, the size of
	// every image or audio embedding. Default DefaultProjectorTextShape.
	TextShape string
	// ImageSize is clip.vision.image_size. For ProjectorMLP it is the side
	// of the square every image is resized to. For ProjectorQwen2VL it is
	// only recorded: mtmd resizes each image to multiples of 2·PatchSize
	// that keep its aspect ratio, within 8 to 4096 tokens (ImageLayout).
	// Vision only: it must be 0 for ProjectorQwen2A, as must PatchSize.
	ImageSize int
	PatchSize int // clip.vision.patch_size
	// MelBins is clip.audio.num_mel_bins, the log-mel channels of the
	// audio encoder's input (1 to 256; default 128, as in Whisper large-v3
	// and Qwen2-Audio). Audio only: it must be 0 for the vision types.
	MelBins int
	// Embd is the encoder's width (clip.vision.embedding_length or
	// clip.audio.embedding_length); Layers, Heads and FF are its blocks,
	// attention heads and feed-forward width under the same prefix.
	Embd   int
	Layers int
	Heads  int
	FF     int // for the vision types it must differ from Embd (see Validate)
	// Weights is the type of matrices, patch and position embeddings:
	// TypeF32 (the zero value) or TypeF16. Norms, biases and the class
	// embedding are always F32; ProjectorQwen2A's position embeddings are
	// always F32 and its convolution kernels F16, as llama.cpp's converters
	// write them.
	Weights gguf.TensorType
	Seed    uint64
	// Workers is the number of goroutines generating weights; 0 means
	// min(GOMAXPROCS, 4). The output does not depend on it.
	Workers int
}

// DefaultProjector returns the default options of a projector type: a
// 2-layer, 64-wide encoder (4 heads, feed-forward 128) paired with
// DefaultProjectorTextShape. ProjectorMLP reads 64x64 images in 8x8
// patches: 64 image tokens for any image. ProjectorQwen2VL uses Qwen2-VL's
// 14x14 patches: 391 image tokens for a 640x488 image (ImageLayout).
// ProjectorQwen2A reads 128 mel bins: 750 audio tokens for each started 30
// seconds of audio (AudioLayout).
func DefaultProjector(typ string) (ProjectorOptions, error) {
	o := ProjectorOptions{Type: typ, TextShape: DefaultProjectorTextShape, Embd: 64, Layers: 2, Heads: 4, FF: 128}
	switch typ {
	case ProjectorMLP:
		o.ImageSize, o.PatchSize = 64, 8
	case ProjectorQwen2VL:
		o.ImageSize, o.PatchSize = 224, 14
	case ProjectorQwen2A:
		o.MelBins = 128
	default:
		return ProjectorOptions{}, fmt.Errorf("synth: unknown projector type %q (known: %q, %q, %q)", typ, ProjectorMLP, ProjectorQwen2VL, ProjectorQwen2A)
	}
	return o, nil
}

// withDefaults fills zero fields from DefaultProjector.
func (o ProjectorOptions) withDefaults() (ProjectorOptions, error) {
	if o.Type == "" {
		o.Type = ProjectorMLP
	}
	d, err := DefaultProjector(o.Type)
	if err != nil {
		return o, err
	}
	if o.TextShape == "" {
		o.TextShape = d.TextShape
	}
	for _, f := range []struct{ v, d *int }{
		{&o.ImageSize, &d.ImageSize}, {&o.PatchSize, &d.PatchSize}, {&o.MelBins, &d.MelBins}, {&o.Embd, &d.Embd},
		{&o.Layers, &d.Layers}, {&o.Heads, &d.Heads}, {&o.FF, &d.FF},
	} {
		if *f.v == 0 {
			*f.v = *f.d
		}
	}
	return o, nil
}

// resolved returns the options with defaults and their text shape, or the
// first constraint that mtmd's loader or graph would trip over.
func (o ProjectorOptions) resolved() (ProjectorOptions, Shape, error) {
	o, err := o.withDefaults()
	if err != nil {
		return o, Shape{}, err
	}
	text, err := ShapeByName(o.TextShape)
	if err != nil {
		return o, Shape{}, err
	}
	if err := text.Validate(); err != nil {
		return o, Shape{}, err
	}
	mlp, qwen, audio := o.Type == ProjectorMLP, o.Type == ProjectorQwen2VL, o.Type == ProjectorQwen2A
	dHead := 0
	if o.Heads > 0 {
		dHead = o.Embd / o.Heads
	}
	switch {
	case text.Arch == "bert":
		return o, text, fmt.Errorf("synth: projector: text shape %q is an encoder; a projector feeds a decoder", text.Name)
	case qwen && text.Arch != "qwen2":
		return o, text, fmt.Errorf("synth: projector: %s pairs with a qwen2 shape (its text model is written as qwen2vl), not %q (%s)", o.Type, text.Name, text.Arch)
	case qwen && text.HeadDim()%4 != 0:
		// M-RoPE splits the rotated half of each head into sections.
		return o, text, fmt.Errorf("synth: projector: %s needs a text head dimension that is a multiple of 4 for M-RoPE, %q has %d", o.Type, text.Name, text.HeadDim())
	case o.ImageSize < 0 || o.PatchSize < 0 || o.MelBins < 0 || o.Embd < 0 || o.Layers < 0 || o.Heads < 0 || o.FF < 0:
		return o, text, errors.New("synth: projector: sizes must not be negative")
	case audio && (o.ImageSize != 0 || o.PatchSize != 0):
		return o, text, fmt.Errorf("synth: projector: %s is an audio projector; image and patch sizes must be 0", o.Type)
	case !audio && o.MelBins != 0:
		return o, text, fmt.Errorf("synth: projector: %s is a vision projector; mel bins must be 0", o.Type)
	case audio && o.MelBins > 256:
		// mtmd's loader rejects more (clip.audio.num_mel_bins in [1, 256]).
		return o, text, fmt.Errorf("synth: projector: %d mel bins is too many (at most 256)", o.MelBins)
	case o.Embd%o.Heads != 0:
		return o, text, fmt.Errorf("synth: projector: width %d is not a multiple of %d heads", o.Embd, o.Heads)
	case qwen && dHead%4 != 0:
		// The vision M-RoPE rotates half of each head in four sections.
		return o, text, fmt.Errorf("synth: projector: %s needs a vision head dimension that is a multiple of 4, got %d", o.Type, dHead)
	case !audio && dHead%2 != 0:
		return o, text, fmt.Errorf("synth: projector: vision head dimension %d must be even", dHead)
	case !audio && o.FF == o.Embd:
		// clip.cpp takes ffn_down with ne[0] == n_embd for the swapped
		// naming of old vision conversions and would exchange up and down.
		return o, text, fmt.Errorf("synth: projector: feed-forward width must differ from the width %d (clip.cpp would read ffn_up/ffn_down as swapped)", o.Embd)
	case mlp && o.Layers < 2:
		return o, text, fmt.Errorf("synth: projector: %s needs at least 2 layers (LLaVA takes the features of the second-to-last one), got %d", o.Type, o.Layers)
	case mlp && o.ImageSize%o.PatchSize != 0:
		return o, text, fmt.Errorf("synth: projector: image size %d is not a multiple of the patch size %d", o.ImageSize, o.PatchSize)
	case qwen && o.ImageSize%(2*o.PatchSize) != 0:
		return o, text, fmt.Errorf("synth: projector: image size %d is not a multiple of twice the patch size %d (the merger folds 2x2 patches)", o.ImageSize, o.PatchSize)
	case o.Layers > 512:
		return o, text, fmt.Errorf("synth: projector: %d layers is too many", o.Layers)
	case o.ImageSize > 4096:
		return o, text, fmt.Errorf("synth: projector: image size %d is too large (at most 4096)", o.ImageSize)
	case o.Weights != gguf.TypeF32 && o.Weights != gguf.TypeF16:
		return o, text, fmt.Errorf("synth: projector: weights of type %s are not supported (use f32 or f16)", o.Weights)
	}
	return o, text, nil
}

// Validate checks the options (after defaults) against the constraints of
// llama.cpp's mtmd for the projector type.
func (o ProjectorOptions) Validate() error {
	_, _, err := o.resolved()
	return err
}

// TextArch returns the general.architecture of the language model the
// projector pairs with: the text shape's own for ProjectorMLP and
// ProjectorQwen2A, "qwen2vl" for ProjectorQwen2VL.
func (o ProjectorOptions) TextArch() (string, error) {
	o, text, err := o.resolved()
	if err != nil {
		return "", err
	}
	if o.Type == ProjectorQwen2VL {
		return "qwen2vl", nil
	}
	return text.Arch, nil
}

// ImageLayout is how mtmd lays out the tokens of one image.
type ImageLayout struct {
	Width, Height int // the size the image is resized to before encoding
	Tokens        int // image embeddings, each of the text model's n_embd
	// X and Y are the token grid with M-RoPE (Tokens = X·Y); otherwise X is
	// Tokens and Y is 1, as mtmd_image_tokens_get_nx/ny report them.
	X, Y int
	// Pos is the number of positions the image advances the sequence:
	// Tokens, or max(X, Y) with M-RoPE (mtmd_input_chunk_get_n_pos).
	Pos int
}

// Qwen2-VL's limits on image tokens (clip.cpp, set_limit_image_tokens(8, 4096)).
const (
	qwen2vlMinTokens = 8
	qwen2vlMaxTokens = 4096
)

// ImageLayout returns the layout mtmd gives an image of width x height
// pixels with the default image token limits (no image_min_tokens or
// image_max_tokens).
func (o ProjectorOptions) ImageLayout(width, height int) (ImageLayout, error) {
	o, _, err := o.resolved()
	if err != nil {
		return ImageLayout{}, err
	}
	if o.Type == ProjectorQwen2A {
		return ImageLayout{}, fmt.Errorf("synth: projector: %s is an audio projector (see AudioLayout)", o.Type)
	}
	if width <= 0 || height <= 0 {
		return ImageLayout{}, fmt.Errorf("synth: projector: image size %dx%d must be positive", width, height)
	}
	if o.Type == ProjectorMLP {
		n := (o.ImageSize / o.PatchSize) * (o.ImageSize / o.PatchSize)
		return ImageLayout{Width: o.ImageSize, Height: o.ImageSize, Tokens: n, X: n, Y: 1, Pos: n}, nil
	}
	align := 2 * o.PatchSize
	w, h := sizePreservedRatio(width, height, align, qwen2vlMinTokens*align*align, qwen2vlMaxTokens*align*align)
	x, y := w/align, h/align
	return ImageLayout{Width: w, Height: h, Tokens: x * y, X: x, Y: y, Pos: max(x, y)}, nil
}

// sizePreservedRatio is img_tool::calc_size_preserved_ratio of mtmd-image.cpp
// (without longest_edge), in the same float32 arithmetic.
func sizePreservedRatio(width, height, align, minPixels, maxPixels int) (int, int) {
	f := float32(align)
	round := func(x float32) int { return int(math.Round(float64(x/f))) * align }
	ceil := func(x float32) int { return int(math.Ceil(float64(x/f))) * align }
	floor := func(x float32) int { return int(math.Floor(float64(x/f))) * align }
	sqrt := func(x float32) float32 { return float32(math.Sqrt(float64(x))) }
	w, h := max(align, round(float32(width))), max(align, round(float32(height)))
	if w*h > maxPixels {
		beta := sqrt(float32(height) * float32(width) / float32(maxPixels))
		h = max(align, floor(float32(height)/beta))
		w = max(align, floor(float32(width)/beta))
	} else if w*h < minPixels {
		beta := sqrt(float32(minPixels) / (float32(height) * float32(width)))
		h = ceil(float32(height) * beta)
		w = ceil(float32(width) * beta)
	}
	return w, h
}

// CLIP's normalisation, which LLaVA-1.5 and Qwen2-VL both use.
var (
	clipImageMean = []float32{0.48145466, 0.4578275, 0.40821073}
	clipImageStd  = []float32{0.26862954, 0.26130258, 0.27577711}
)

// projectorSeed keeps a projector's weights independent of a text model
// written with the same seed.
const projectorSeed = 0x6d6d70726f6a // "mmproj"

// projectorLayout returns the metadata and tensors of a projector.
func projectorLayout(o ProjectorOptions) ([]gguf.KV, []synthTensor, error) {
	o, text, err := o.resolved()
	if err != nil {
		return nil, nil, err
	}
	var (
		kv []gguf.KV
		ts []synthTensor
	)
	if o.Type == ProjectorQwen2A {
		kv, ts = audioProjectorLayout(o, text)
	} else {
		kv, ts = visionProjectorLayout(o, text)
	}
	for _, t := range ts {
		if _, err := gguf.TensorSize(t.Type, t.Shape); err != nil {
			return nil, nil, fmt.Errorf("synth: projector tensor %s as %s: %w", t.Name, t.Type, err)
		}
	}
	return kv, ts, nil
}

// projectorHeader returns the general.* metadata of a projector.
func projectorHeader(o ProjectorOptions, text Shape, description string) []gguf.KV {
	ft := gguf.FileTypeAllF32
	if o.Weights == gguf.TypeF16 {
		ft = gguf.FileTypeMostlyF16
	}
	return []gguf.KV{
		{Key: "general.architecture", Value: gguf.String("clip")},
		{Key: "general.type", Value: gguf.String("mmproj")},
		{Key: "general.name", Value: gguf.String(fmt.Sprintf("llamago synthetic %s projector for %s", o.Type, text.Name))},
		{Key: "general.description", Value: gguf.String(description)},
		{Key: "general.file_type", Value: gguf.Uint32(uint32(ft))},
	}
}

// visionProjectorLayout returns the metadata and tensors of a vision
// projector with resolved options.
func visionProjectorLayout(o ProjectorOptions, text Shape) ([]gguf.KV, []synthTensor) {
	qwen := o.Type == ProjectorQwen2VL
	eps, family := float32(1e-5), "LLaVA-1.5"
	if qwen {
		eps, family = 1e-6, "Qwen2-VL"
	}
	kv := append(projectorHeader(o, text, "random-weight "+family+" vision encoder and projector"), []gguf.KV{
		{Key: "clip.has_vision_encoder", Value: gguf.Bool(true)},
		{Key: "clip.projector_type", Value: gguf.String(o.Type)},
		{Key: "clip.vision.projection_dim", Value: gguf.Uint32(uint32(text.Embd))},
		{Key: "clip.vision.image_size", Value: gguf.Uint32(uint32(o.ImageSize))},
		{Key: "clip.vision.patch_size", Value: gguf.Uint32(uint32(o.PatchSize))},
		{Key: "clip.vision.embedding_length", Value: gguf.Uint32(uint32(o.Embd))},
		{Key: "clip.vision.feed_forward_length", Value: gguf.Uint32(uint32(o.FF))},
		{Key: "clip.vision.block_count", Value: gguf.Uint32(uint32(o.Layers))},
		{Key: "clip.vision.attention.head_count", Value: gguf.Uint32(uint32(o.Heads))},
		{Key: "clip.vision.attention.layer_norm_epsilon", Value: gguf.Float32(eps)},
		{Key: "clip.vision.image_mean", Value: gguf.Array(clipImageMean)},
		{Key: "clip.vision.image_std", Value: gguf.Array(clipImageStd)},
	}...)
	if !qwen {
		// CLIP's quick GELU, as the LLaVA converter records it.
		kv = append(kv, gguf.KV{Key: "clip.use_gelu", Value: gguf.Bool(false)})
	}

	var (
		e     = int64(o.Embd)
		ff    = int64(o.FF)
		p     = int64(o.PatchSize)
		textE = int64(text.Embd)
		ts    = tensorList{weight: o.Weights}
		add   = ts.add
	)
	// The patch embedding is a conv2d kernel [kw, kh, channels, width].
	add("v.patch_embd.weight", roleWeight, p, p, 3, e)
	if qwen {
		// The second frame of Qwen2-VL's temporal patch (a still image is
		// encoded as two identical frames).
		add("v.patch_embd.weight.1", roleWeight, p, p, 3, e)
	} else {
		n := int64(o.ImageSize/o.PatchSize) * int64(o.ImageSize/o.PatchSize)
		add("v.class_embd", roleBias, e)
		add("v.position_embd.weight", roleWeight, e, n+1)
		add("v.pre_ln.weight", roleNorm, e)
		add("v.pre_ln.bias", roleBias, e)
	}
	for i := range o.Layers {
		blk := fmt.Sprintf("v.blk.%d.", i)
		for _, m := range []string{"attn_q", "attn_k", "attn_v", "attn_out"} {
			add(blk+m+".weight", roleWeight, e, e)
			add(blk+m+".bias", roleBias, e)
		}
		add(blk+"ln1.weight", roleNorm, e)
		add(blk+"ln1.bias", roleBias, e)
		add(blk+"ffn_up.weight", roleWeight, e, ff)
		add(blk+"ffn_up.bias", roleBias, ff)
		add(blk+"ffn_down.weight", roleWeight, ff, e)
		add(blk+"ffn_down.bias", roleBias, e)
		add(blk+"ln2.weight", roleNorm, e)
		add(blk+"ln2.bias", roleBias, e)
	}
	if qwen {
		// The merger: a norm (ln_q), then an MLP over each 2x2 block of
		// patches concatenated (4·width) to the text model's width.
		add("v.post_ln.weight", roleNorm, e)
		add("v.post_ln.bias", roleBias, e)
		add("mm.0.weight", roleWeight, 4*e, 4*e)
		add("mm.0.bias", roleBias, 4*e)
		add("mm.2.weight", roleWeight, 4*e, textE)
		add("mm.2.bias", roleBias, textE)
	} else {
		add("mm.0.weight", roleWeight, e, textE)
		add("mm.0.bias", roleBias, textE)
		add("mm.2.weight", roleWeight, textE, textE)
		add("mm.2.bias", roleBias, textE)
	}
	return kv, ts.ts
}

// ProjectorTensors returns the tensor infos WriteProjector writes, in
// ggml order (shapes [n_in, n_out]).
func ProjectorTensors(o ProjectorOptions) ([]gguf.TensorInfo, error) {
	_, ts, err := projectorLayout(o)
	if err != nil {
		return nil, err
	}
	out := make([]gguf.TensorInfo, len(ts))
	for i, t := range ts {
		out[i] = t.TensorInfo
	}
	return out, nil
}

// WriteProjector streams a synthetic projector (mmproj GGUF) to w. Norm
// weights are 1; other weights, biases and embeddings are random with mean 0
// and standard deviation 0.02, as in Write. The same options always produce
// the same bytes.
func WriteProjector(w io.Writer, o ProjectorOptions) error {
	meta, tensors, err := projectorLayout(o)
	if err != nil {
		return err
	}
	return writeSynth(w, meta, tensors, o.Seed^projectorSeed, o.Workers)
}

// WriteProjectorFile writes a synthetic projector to path, through a
// temporary file in the same directory that is renamed into place on success.
func WriteProjectorFile(path string, o ProjectorOptions) error {
	if err := o.Validate(); err != nil {
		return err // before creating anything
	}
	return writeFileAtomic(path, func(w io.Writer) error { return WriteProjector(w, o) })
}

// WriteTextFile writes the language model a projector pairs with, from
// opts (whose Shape may be empty: the projector's TextShape). For
// ProjectorMLP and ProjectorQwen2A this is WriteFile. For ProjectorQwen2VL the qwen2 shape is
// written with architecture qwen2vl: the same tensors, keys under
// "qwen2vl." and Qwen2-VL's M-RoPE sections (16, 24, 24, 0 of a 128-wide
// head, scaled to the shape's head dimension).
func WriteTextFile(path string, p ProjectorOptions, opts Options) error {
	p, text, err := p.resolved()
	if err != nil {
		return err
	}
	if opts.Shape == "" {
		opts.Shape = text.Name
	} else if opts.Shape != text.Name {
		return fmt.Errorf("synth: text shape %q does not match the projector's %q", opts.Shape, text.Name)
	}
	if p.Type != ProjectorQwen2VL {
		return WriteFile(path, opts)
	}
	meta, tensors, err := synthLayout(opts)
	if err != nil {
		return err
	}
	meta = mropeMetadata(meta, text)
	return writeFileAtomic(path, func(w io.Writer) error {
		return writeSynth(w, meta, tensors, opts.Seed, opts.Workers)
	})
}

// MRoPESections returns the rope.dimension_sections of the qwen2vl text
// model WriteTextFile writes for a shape: Qwen2-VL's split of the rotated
// pairs of a head (16, 24, 24, 0 for head dimension 128) into temporal,
// height and width sections.
func MRoPESections(s Shape) [4]int32 {
	half := int32(s.HeadDim() / 2)
	t := half / 4
	h := (half - t) / 2
	return [4]int32{t, h, half - t - h, 0}
}

// mropeMetadata turns qwen2 metadata into qwen2vl metadata.
func mropeMetadata(meta []gguf.KV, s Shape) []gguf.KV {
	out := make([]gguf.KV, 0, len(meta)+1)
	for _, kv := range meta {
		switch {
		case kv.Key == "general.architecture":
			kv.Value = gguf.String("qwen2vl")
		case strings.HasPrefix(kv.Key, "qwen2."):
			kv.Key = "qwen2vl." + strings.TrimPrefix(kv.Key, "qwen2.")
		}
		out = append(out, kv)
		if kv.Key == "qwen2vl.rope.freq_base" {
			sec := MRoPESections(s)
			out = append(out, gguf.KV{Key: "qwen2vl.rope.dimension_sections", Value: gguf.Array(sec[:])})
		}
	}
	return out
}

// writeSynth writes a GGUF with synthetic tensor data.
func writeSynth(w io.Writer, meta []gguf.KV, tensors []synthTensor, seed uint64, workers int) error {
	infos := make([]gguf.TensorInfo, len(tensors))
	for i, t := range tensors {
		infos[i] = t.TensorInfo
	}
	gw, err := gguf.NewWriter(w, meta, infos)
	if err != nil {
		return err
	}
	if workers <= 0 {
		workers = min(runtime.GOMAXPROCS(0), 4)
	}
	if err := generate(gw, tensors, seed, workers); err != nil {
		return err
	}
	return gw.Close()
}

// writeFileAtomic writes path through a temporary file in its directory,
// renamed into place when write succeeds.
func writeFileAtomic(path string, write func(io.Writer) error) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("synth: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := write(tmp); err != nil {
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("synth: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("synth: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("synth: %w", err)
	}
	return nil
}
