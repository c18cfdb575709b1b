package synth

import (
	"fmt"
	"github.com/llamago/llamago/llama/gguf"
)

// AudioSampleRate is the rate, in Hz, of the samples mtmd's Whisper
// preprocessing reads (mtmd's helpers resample decoded audio files to it).
const AudioSampleRate = 16000

// The Whisper front end of mtmd (mtmd-audio.cpp) for ProjectorQwen2A.
const (
	whisperHop          = 160  // samples per mel frame (10 ms)
	whisperFFTHalf      = 200  // half of the 400-sample FFT window
	whisperWindowFrames = 3000 // mel frames per encoded window (30 s)
	// whisperPositions is the length of the learned position table: the
	// frames of a window after the stride-2 convolution, all of which the
	// encoder graph reads.
	whisperPositions = whisperWindowFrames / 2
	// whisperWindowTokens is the audio tokens of a window: its positions
	// halved again by the average pooling.
	whisperWindowTokens = whisperPositions / 2
	// whisperConvKernel is the width of both convolutions.
	whisperConvKernel = 3
)

// AudioLayout is how mtmd lays out the tokens of one audio clip.
type AudioLayout struct {
	// Chunks is the number of 30-second windows the clip is encoded in:
	// mtmd_tokenize makes one audio chunk of each.
	Chunks int
	// ChunkTokens is the audio embeddings of each chunk, each of the text
	// model's n_embd; each advances the sequence by one position.
	ChunkTokens int
	Tokens      int // Chunks·ChunkTokens
}

// AudioLayout returns the layout mtmd gives samples mono samples at
// AudioSampleRate. mtmd appends 30 seconds of silence before computing the
// mel spectrogram and encodes only whole 3000-frame windows, so every clip
// has at least one window and a clip of 29.99 seconds or more has a
// second, mostly silent one: Chunks is (3001 + samples/160) / 3000, counting
// clips shorter than 201 samples as 201.
func (o ProjectorOptions) AudioLayout(samples int) (AudioLayout, error) {
	o, _, err := o.resolved()
	if err != nil {
		return AudioLayout{}, err
	}
	if o.Type != ProjectorQwen2A {
		return AudioLayout{}, fmt.Errorf("synth: projector: %s is a vision projector (see ImageLayout)", o.Type)
	}
	if samples <= 0 {
		return AudioLayout{}, fmt.Errorf("synth: projector: %d audio samples: must be positive", samples)
	}
	// Clips too short to reflect half an FFT window are padded with zeros.
	samples = max(samples, whisperFFTHalf+1)
	// The mel frames: samples, 30 s of silence and the reflected half
	// windows at both ends, framed by the 400-sample window every 160.
	frames := (samples+whisperWindowFrames*whisperHop)/whisperHop + 1
	n := frames / whisperWindowFrames
	return AudioLayout{Chunks: n, ChunkTokens: whisperWindowTokens, Tokens: n * whisperWindowTokens}, nil
}

// audioProjectorLayout returns the metadata and tensors of ProjectorQwen2A
// with resolved options, as llama.cpp's Whisper-encoder converter writes
// them.
func audioProjectorLayout(o ProjectorOptions, text Shape) ([]gguf.KV, []synthTensor) {
	kv := append(projectorHeader(o, text, "random-weight Qwen2-Audio (Whisper) audio encoder and projector"), []gguf.KV{
		{Key: "clip.has_audio_encoder", Value: gguf.Bool(true)},
		{Key: "clip.projector_type", Value: gguf.String(o.Type)},
		{Key: "clip.audio.projection_dim", Value: gguf.Uint32(uint32(text.Embd))},
		{Key: "clip.audio.embedding_length", Value: gguf.Uint32(uint32(o.Embd))},
		{Key: "clip.audio.feed_forward_length", Value: gguf.Uint32(uint32(o.FF))},
		{Key: "clip.audio.block_count", Value: gguf.Uint32(uint32(o.Layers))},
		{Key: "clip.audio.attention.head_count", Value: gguf.Uint32(uint32(o.Heads))},
		{Key: "clip.audio.num_mel_bins", Value: gguf.Uint32(uint32(o.MelBins))},
		{Key: "clip.audio.attention.layer_norm_epsilon", Value: gguf.Float32(1e-5)},
	}...)

	var (
		e     = int64(o.Embd)
		ff    = int64(o.FF)
		mel   = int64(o.MelBins)
		k     = int64(whisperConvKernel)
		textE = int64(text.Embd)
		ts    = tensorList{weight: o.Weights}
		add   = ts.add
	)
	// typed overrides the type of the last tensor added.
	typed := func(t gguf.TensorType) { ts.ts[len(ts.ts)-1].Type = t }
	// conv adds a 1-D convolution: an F16 kernel [width, in, out] and a
	// bias [1, out] that broadcasts over the frames of the output.
	conv := func(name string, in int64) {
		add(name+".weight", roleWeight, k, in, e)
		typed(gguf.TypeF16)
		add(name+".bias", roleBias, 1, e)
	}
	conv("a.conv1d.1", mel) // stride 1
	conv("a.conv1d.2", e)   // stride 2
	// The graph adds a view of the position table to the F32 activations,
	// which ggml's CPU backend does only for an F32 table (converters
	// always write position embeddings as F32).
	add("a.position_embd.weight", roleWeight, e, whisperPositions)
	typed(gguf.TypeF32)
	for i := range o.Layers {
		blk := fmt.Sprintf("a.blk.%d.", i)
		add(blk+"ln1.weight", roleNorm, e)
		add(blk+"ln1.bias", roleBias, e)
		for _, m := range []string{"attn_q", "attn_k", "attn_v", "attn_out"} {
			add(blk+m+".weight", roleWeight, e, e)
			if m != "attn_k" { // Whisper's key projection has no bias
				add(blk+m+".bias", roleBias, e)
			}
		}
		add(blk+"ln2.weight", roleNorm, e)
		add(blk+"ln2.bias", roleBias, e)
		add(blk+"ffn_up.weight", roleWeight, e, ff)
		add(blk+"ffn_up.bias", roleBias, ff)
		add(blk+"ffn_down.weight", roleWeight, ff, e)
		add(blk+"ffn_down.bias", roleBias, e)
	}
	add("a.post_ln.weight", roleNorm, e)
	add("a.post_ln.bias", roleBias, e)
	// The projector: one linear layer to the text model's width.
	add("mm.a.fc.weight", roleWeight, e, textE)
	add("mm.a.fc.bias", roleBias, textE)
	return kv, ts.ts
}
