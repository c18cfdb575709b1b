package llama

import (
	"bytes"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/llamago/llamago/internal/llamacpp"
	"github.com/llamago/llamago/internal/synth"
	"github.com/llamago/llamago/internal/testmodel"
	"github.com/llamago/llamago/llama/gguf"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testWAV is a WAV file of samples 16-bit mono samples at 16 kHz: a 440 Hz tone.
func testWAV(samples int) []byte {
	var b bytes.Buffer
	le := func(v uint32, n int) {
		for i := range n {
			b.WriteByte(byte(v >> (8 * i)))
		}
	}
	b.WriteString("RIFF")
	le(uint32(36+2*samples), 4)
	b.WriteString("WAVEfmt ")
	le(16, 4)
	le(1, 2)     // PCM
	le(1, 2)     // mono
	le(16000, 4) // samples per second
	le(32000, 4) // bytes per second
	le(2, 2)     // bytes per sample
	le(16, 2)    // bits per sample
	b.WriteString("data")
	le(uint32(2*samples), 4)
	for i := range samples {
		le(uint32(uint16(int16(8000*math.Sin(2*math.Pi*440*float64(i)/16000)))), 2)
	}
	return b.Bytes()
}

func testImage(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(testmodel.MediaFile(t, "test-1.jpeg"))
	require.NoError(t, err)
	return b
}

// describe runs the greedy continuation of one user message with an image or a clip, as
// llama-mtmd-cli does for -p: the marker before the text, the model's chat template.
// onDevice picks the tokens with the device stage a GPU context places by itself (see
// placeSampling), forced on the CPU backend.
func describe(t *testing.T, model, projector string, media []byte, prompt string, n int, onDevice bool) (string, GenerateResult) {
	t.Helper()
	m, err := LoadModel(t.Context(), model, &ModelParams{GPULayers: 0})
	require.NoError(t, err)
	defer m.Close()
	c, err := m.NewContext(&ContextParams{NCtx: 1024, Threads: 2})
	require.NoError(t, err)
	defer c.Close()
	c.autoDevice = onDevice
	p, err := m.LoadProjector(projector, &ProjectorParams{Threads: 2})
	require.NoError(t, err)
	defer p.Close()
	item, err := p.DecodeMedia(media)
	require.NoError(t, err)
	defer item.Close()
	tmpl, err := NewChatTemplate(m, nil)
	require.NoError(t, err)
	defer tmpl.Close()
	chat, err := tmpl.Apply(&ChatRequest{Messages: []Message{{Role: RoleUser, Content: MediaMarker + prompt}}})
	require.NoError(t, err)
	s, err := NewSampler(m, Greedy())
	require.NoError(t, err)
	defer s.Close()
	var out strings.Builder
	for piece, err := range c.GenerateMedia(t.Context(), p, chat.Prompt, []*Media{item}, s, &GenerateParams{MaxTokens: n, IgnoreEOG: true}) {
		require.NoError(t, err)
		out.WriteString(piece)
	}
	res := c.LastGeneration()
	assert.Equal(t, onDevice, res.DeviceSampling)
	return out.String(), res
}

// The same media and prompt through upstream's llama-mtmd-cli of the same build: the
// same number of media tokens and prompt tokens, and the same greedy tokens after the
// media (CPU), for a LLaVA-style projector, Qwen2-VL's (M-RoPE positions) and
// Qwen2-Audio's (llama.cpp's test-2.mp3: one 30-second window of 750 tokens).
func TestMultimodalMatchesUpstream(t *testing.T) {
	cli, err := llamacpp.Tool(Backend, "llama-mtmd-cli")
	require.NoError(t, err)
	// Seeds whose random weights write words after the media, not only blanks.
	for _, tc := range []struct {
		typ, flag, file, prompt string
		seed                    uint64
	}{
		{synth.ProjectorMLP, "--image", "test-1.jpeg", "Describe the image.", 1},
		{synth.ProjectorQwen2VL, "--image", "test-1.jpeg", "Describe the image.", 4},
		{synth.ProjectorQwen2A, "--audio", "test-2.mp3", "What is said?", 1},
	} {
		t.Run(tc.typ, func(t *testing.T) {
			model, projector := testmodel.ProjectorPair(t, tc.typ, tc.seed)
			const n = 8
			file := testmodel.MediaFile(t, tc.file)
			cmd := exec.CommandContext(t.Context(), cli, "-m", model, "--mmproj", projector, tc.flag, file,
				"-p", tc.prompt, "-n", strconv.Itoa(n), "--temp", "0", "--jinja", "-t", "2", "-c", "1024", "-ngl", "0", "-lv", "4")
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			require.NoError(t, cmd.Run(), stderr.String())
			// llama-mtmd-cli writes a newline before the reply and two after it.
			wantText, ok := strings.CutPrefix(stdout.String(), "\n")
			require.True(t, ok, "%q", stdout.String())
			wantText, ok = strings.CutSuffix(wantText, "\n\n")
			require.True(t, ok, "%q", stdout.String())
			require.NotEmpty(t, strings.TrimSpace(wantText), "a reply with words to compare")
			mediaTokens := 0
			for _, m := range regexp.MustCompile(`n_tokens_batch = (\d+)`).FindAllStringSubmatch(stderr.String(), -1) {
				k, _ := strconv.Atoi(m[1])
				mediaTokens += k
			}
			promptTokens := regexp.MustCompile(`prompt eval time = .*/\s+(\d+) tokens`).FindStringSubmatch(stderr.String())
			require.NotNil(t, promptTokens, stderr.String())

			data, err := os.ReadFile(file)
			require.NoError(t, err)
			got, res := describe(t, model, projector, data, tc.prompt, n, false)
			t.Logf("%s: %d media tokens, %d prompt tokens; %q", tc.typ, res.MediaTokens, res.PromptTokens, got)
			assert.Equal(t, mediaTokens, res.MediaTokens, "media tokens")
			assert.Equal(t, promptTokens[1], strconv.Itoa(res.PromptTokens), "prompt tokens")
			assert.Equal(t, wantText, got, "greedy text after the media")
			got, _ = describe(t, model, projector, data, tc.prompt, n, true)
			assert.Equal(t, wantText, got, "greedy text after the media, picked by the device stage")
		})
	}
}

// Bad media and mismatched inputs are errors, and the process and the projector stay usable.
func TestMultimodalHardening(t *testing.T) {
	model, projector := testmodel.ProjectorPair(t, synth.ProjectorMLP, 1)
	m, err := LoadModel(t.Context(), model, &ModelParams{GPULayers: 0})
	require.NoError(t, err)
	defer m.Close()
	p, err := m.LoadProjector(projector, &ProjectorParams{Threads: 2})
	require.NoError(t, err)
	defer p.Close()
	assert.Equal(t, ProjectorCaps{Vision: true, Marker: MediaMarker}, p.Caps())

	jpeg := testImage(t)
	png := func(w, h uint32) []byte {
		b := []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR")
		b = append(b, byte(w>>24), byte(w>>16), byte(w>>8), byte(w), byte(h>>24), byte(h>>16), byte(h>>8), byte(h))
		return append(b, 8, 2, 0, 0, 0, 0, 0, 0, 0)
	}
	for name, data := range map[string][]byte{
		"empty":                            nil,
		"text":                             []byte("not an image at all"),
		"corrupt JPEG":                     append(append([]byte{}, jpeg[:20]...), bytes.Repeat([]byte{0x55}, 5000)...),
		"absurd PNG":                       png(1<<30, 1<<30),
		"zero-size PNG":                    png(0, 10),
		"audio to a vision-only projector": testWAV(1600),
	} {
		_, err := p.DecodeMedia(data)
		assert.ErrorIs(t, err, ErrMedia, name)
	}
	for name, args := range map[string][3]int{"zero width": {0, 4, 0}, "too wide": {MaxImageSide + 1, 1, (MaxImageSide + 1) * 3}, "short data": {4, 4, 47}} {
		_, err := NewImageRGB(args[0], args[1], make([]byte, args[2]))
		assert.ErrorIs(t, err, ErrMedia, name)
	}

	red, err := NewImageRGB(8, 8, bytes.Repeat([]byte{255, 0, 0}, 64))
	require.NoError(t, err)
	defer red.Close()
	w, h := red.Size()
	assert.Equal(t, [2]int{8, 8}, [2]int{w, h})
	c, err := m.NewContext(&ContextParams{NCtx: 512, Threads: 2})
	require.NoError(t, err)
	defer c.Close()
	s, err := NewSampler(m, Greedy())
	require.NoError(t, err)
	defer s.Close()
	gen := func(prompt string, media ...*Media) error {
		_, err := c.MemorySeqRemove(0, -1, -1)
		require.NoError(t, err)
		for _, err := range c.GenerateMedia(t.Context(), p, prompt, media, s, &GenerateParams{MaxTokens: 2}) {
			if err != nil {
				return err
			}
		}
		return nil
	}
	assert.ErrorIs(t, gen("no marker", red), ErrMedia, "a media item without a marker")
	assert.ErrorIs(t, gen(MediaMarker+MediaMarker+" two markers", red), ErrMedia, "two markers, one item")
	assert.ErrorIs(t, gen("ends with the image "+MediaMarker, red), ErrInvalidParams, "nothing after the media")
	assert.ErrorIs(t, gen(MediaMarker+" x", nil), ErrMedia, "a nil item")
	assert.ErrorIs(t, gen(MediaMarker+" x", &Media{}), ErrMedia, "a closed item")
	mp, err := p.Prompt(MediaMarker+" x", []*Media{red}, true)
	require.NoError(t, err)
	_, err = c.MemorySeqRemove(0, -1, -1)
	require.NoError(t, err)
	_, err = c.EvalMedia(t.Context(), mp, 0, 5)
	assert.ErrorIs(t, err, ErrInvalidBatch, "a position that leaves a gap in the sequence")
	_, err = c.EvalMedia(t.Context(), mp, 99, 0)
	assert.ErrorIs(t, err, ErrInvalidParams, "a sequence the context does not have")
	next, err := c.EvalMedia(t.Context(), mp, 0, 0)
	require.NoError(t, err)
	assert.Equal(t, Pos(mp.Tokens()-len(mp.Text())), next, "the position after the image")
	require.NoError(t, mp.Close())
	_, err = c.EvalMedia(t.Context(), mp, 0, next)
	assert.ErrorIs(t, err, ErrInvalidParams, "a closed media prompt")
	require.NoError(t, gen(MediaMarker+" the image is fine after all that", red), "a good request still works")

	// A projector for another model, a model file as a projector, a projector after Close.
	other := loadTiny(t)
	for _, err = range c.GenerateMedia(t.Context(), &Projector{model: other}, MediaMarker+" x", []*Media{red}, s, nil) {
	}
	assert.ErrorIs(t, err, ErrInvalidParams)
	_, err = m.LoadProjector(model, nil)
	var le *LoadError
	assert.ErrorAs(t, err, &le, "a language model is no projector")
	_, err = m.LoadProjector(filepath.Join(t.TempDir(), "missing.gguf"), nil)
	assert.ErrorAs(t, err, &le)
	wide, err := LoadModel(t.Context(), synthModel(t, "mistral-256", gguf.TypeF16), &ModelParams{GPULayers: 0})
	require.NoError(t, err)
	defer wide.Close()
	_, err = wide.LoadProjector(projector, nil)
	assert.ErrorAs(t, err, &le, "a projector whose output (64) does not match the model's embeddings (256)")
	p2, err := m.LoadProjector(projector, nil)
	require.NoError(t, err)
	require.NoError(t, p2.Close())
	require.NoError(t, p2.Close())
	_, err = p2.DecodeMedia(jpeg)
	assert.ErrorIs(t, err, ErrClosed)
}

// An audio projector: clips in WAV and MP3, images and broken clips refused, a clip longer
// than the context refused before it is encoded.
func TestMultimodalAudio(t *testing.T) {
	model, projector := testmodel.ProjectorPair(t, synth.ProjectorQwen2A, 1)
	m, err := LoadModel(t.Context(), model, &ModelParams{GPULayers: 0})
	require.NoError(t, err)
	defer m.Close()
	p, err := m.LoadProjector(projector, &ProjectorParams{Threads: 2})
	require.NoError(t, err)
	defer p.Close()
	assert.Equal(t, ProjectorCaps{Audio: true, AudioSampleRate: synth.AudioSampleRate, Marker: MediaMarker}, p.Caps())

	wav := testWAV(synth.AudioSampleRate / 2)
	mp3, err := os.ReadFile(testmodel.MediaFile(t, "test-2.mp3"))
	require.NoError(t, err)
	for name, data := range map[string][]byte{
		"an image to an audio-only projector": testImage(t),
		"a WAV header and no samples":         wav[:44],
		"a WAV cut inside its header":         wav[:30],
		"MP3 bytes scrambled":                 append(append([]byte{}, mp3[:64]...), bytes.Repeat([]byte{0xa5}, 4096)...),
	} {
		_, err := p.DecodeMedia(data)
		assert.ErrorIs(t, err, ErrMedia, name)
	}
	red, err := NewImageRGB(4, 4, make([]byte, 48))
	require.NoError(t, err)
	defer red.Close()

	c, err := m.NewContext(&ContextParams{NCtx: 1024, Threads: 2})
	require.NoError(t, err)
	defer c.Close()
	s, err := NewSampler(m, Greedy())
	require.NoError(t, err)
	defer s.Close()
	gen := func(c *Context, media *Media) (GenerateResult, error) {
		_, err := c.MemorySeqRemove(0, -1, -1)
		require.NoError(t, err)
		for _, err := range c.GenerateMedia(t.Context(), p, MediaMarker+" what is said?", []*Media{media}, s, &GenerateParams{MaxTokens: 2}) {
			if err != nil {
				return GenerateResult{}, err
			}
		}
		return c.LastGeneration(), nil
	}
	_, err = gen(c, red)
	assert.ErrorIs(t, err, ErrMedia, "an RGB image to an audio-only projector")
	layout, err := synth.ProjectorOptions{Type: synth.ProjectorQwen2A}.AudioLayout(synth.AudioSampleRate / 2)
	require.NoError(t, err)
	for name, data := range map[string][]byte{"WAV": wav, "MP3": mp3} {
		clip, err := p.DecodeMedia(data)
		require.NoError(t, err, name)
		assert.True(t, clip.IsAudio(), name)
		res, err := gen(c, clip)
		require.NoError(t, err, name)
		assert.Equal(t, layout.Tokens, res.MediaTokens, name)
		assert.Equal(t, 2, res.GeneratedTokens, name)
		clip.Close()
	}

	// Two windows (30 s and more) do not fit a context of 1024.
	long, err := p.DecodeMedia(testWAV(31 * synth.AudioSampleRate))
	require.NoError(t, err)
	defer long.Close()
	_, err = gen(c, long)
	assert.ErrorIs(t, err, ErrContextFull, "a clip longer than the context")
	mp, err := p.Prompt(MediaMarker+" x", []*Media{long}, true)
	require.NoError(t, err)
	defer mp.Close()
	assert.Equal(t, 2*layout.Tokens, mp.MediaTokens(), "two windows")
	_, err = c.EvalMedia(t.Context(), mp, 0, 0)
	assert.ErrorIs(t, err, ErrContextFull, "EvalMedia of a clip longer than the context")
	clip, err := p.DecodeMedia(wav)
	require.NoError(t, err)
	defer clip.Close()
	_, err = gen(c, clip)
	assert.NoError(t, err, "the context works after the refusal")
}

// A ChatSession with a projector sees the images of its messages: the reply depends on
// the image, and the conversation goes on over several turns.
func TestChatSessionMedia(t *testing.T) {
	model, projector := testmodel.ProjectorPair(t, synth.ProjectorMLP, 1)
	m, err := LoadModel(t.Context(), model, &ModelParams{GPULayers: 0})
	require.NoError(t, err)
	defer m.Close()
	p, err := m.LoadProjector(projector, &ProjectorParams{Threads: 2})
	require.NoError(t, err)
	defer p.Close()
	reply := func(rgb []byte) string {
		img, err := NewImageRGB(8, 8, bytes.Repeat(rgb, 64))
		require.NoError(t, err)
		defer img.Close()
		_, s := newTestSession(t, m, 512, &ChatSessionParams{Sampling: greedyParams(), MaxTokens: 6, Projector: p})
		text, err := drain(t, s.Send(t.Context(), Message{Role: RoleUser, Parts: []ContentPart{{Type: "image", Media: img}, {Type: "text", Text: "What is this?"}}}))
		require.NoError(t, err)
		assert.Positive(t, s.LastTurn().GeneratedTokens)
		again, err := drain(t, s.Say(t.Context(), "And again?"))
		require.NoError(t, err, "a second turn re-reads the conversation with its image")
		assert.NotEmpty(t, again)
		assert.ErrorIs(t, s.Save(io.Discard), ErrChat, "media is not saved")
		return text
	}
	red, blue := reply([]byte{255, 0, 0}), reply([]byte{0, 0, 255})
	assert.NotEqual(t, red, blue, "the image changes the reply")

	// Without a projector the session refuses media; a media part needs its media.
	img, err := NewImageRGB(2, 2, make([]byte, 12))
	require.NoError(t, err)
	defer img.Close()
	_, s := newTestSession(t, m, 512, nil)
	_, err = drain(t, s.Send(t.Context(), Message{Role: RoleUser, Parts: []ContentPart{{Type: "image", Media: img}}}))
	assert.ErrorIs(t, err, ErrChat)
	_, err = drain(t, s.Send(t.Context(), Message{Role: RoleUser, Parts: []ContentPart{{Type: "image"}}}))
	assert.ErrorIs(t, err, ErrChat)
	_, err = drain(t, s.Send(t.Context(), Message{Role: RoleUser, Parts: []ContentPart{{Type: "audio", Media: img}}}))
	assert.ErrorIs(t, err, ErrChat, "an image as audio")
}
