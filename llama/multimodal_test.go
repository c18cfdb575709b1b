package llama

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/llamago/llamago/internal/llamacpp"
	"github.com/llamago/llamago/internal/synth"
	"github.com/llamago/llamago/llama/gguf"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// projectorPair writes a synthetic projector of type typ and the language model it pairs
// with (random weights, the Qwen2 vocabulary) into a temporary directory.
func projectorPair(t *testing.T, typ string, seed uint64) (model, projector string) {
	t.Helper()
	opts, err := synth.DefaultProjector(typ)
	require.NoError(t, err)
	dir := t.TempDir()
	model, projector = filepath.Join(dir, "llm.gguf"), filepath.Join(dir, "mmproj.gguf")
	require.NoError(t, synth.WriteTextFile(model, opts, synth.Options{VocabPath: vocabPath(t, "qwen2"), Type: gguf.TypeF16, Seed: seed}))
	require.NoError(t, synth.WriteProjectorFile(projector, opts))
	return model, projector
}

func testImage(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(llamaCppDir(t), "tools", "mtmd", "test-1.jpeg"))
	require.NoError(t, err)
	return b
}

// describe runs the greedy continuation of one user message with an image, as
// llama-mtmd-cli does for -p: the marker before the text, the model's chat template.
func describe(t *testing.T, model, projector string, image []byte, n int) (string, GenerateResult) {
	t.Helper()
	m, err := LoadModel(t.Context(), model, &ModelParams{GPULayers: 0})
	require.NoError(t, err)
	defer m.Close()
	c, err := m.NewContext(&ContextParams{NCtx: 1024, Threads: 2})
	require.NoError(t, err)
	defer c.Close()
	p, err := m.LoadProjector(projector, &ProjectorParams{Threads: 2})
	require.NoError(t, err)
	defer p.Close()
	img, err := p.DecodeMedia(image)
	require.NoError(t, err)
	defer img.Close()
	tmpl, err := NewChatTemplate(m, nil)
	require.NoError(t, err)
	defer tmpl.Close()
	prompt, err := tmpl.Apply(&ChatRequest{Messages: []Message{{Role: RoleUser, Content: MediaMarker + "Describe the image."}}})
	require.NoError(t, err)
	s, err := NewSampler(m, Greedy())
	require.NoError(t, err)
	defer s.Close()
	var out strings.Builder
	for piece, err := range c.GenerateMedia(t.Context(), p, prompt.Prompt, []*Media{img}, s, &GenerateParams{MaxTokens: n, IgnoreEOG: true}) {
		require.NoError(t, err)
		out.WriteString(piece)
	}
	return out.String(), c.LastGeneration()
}

// The same image and prompt through upstream's llama-mtmd-cli of the same build: the
// same number of image tokens and prompt tokens, and the same greedy tokens after the
// image (CPU), for a LLaVA-style projector and for Qwen2-VL's (M-RoPE positions).
func TestMultimodalMatchesUpstream(t *testing.T) {
	cli, err := llamacpp.Tool(Backend, "llama-mtmd-cli")
	require.NoError(t, err)
	// Seeds whose random weights write words after the image, not only blanks.
	for typ, seed := range map[string]uint64{synth.ProjectorMLP: 1, synth.ProjectorQwen2VL: 4} {
		t.Run(typ, func(t *testing.T) {
			model, projector := projectorPair(t, typ, seed)
			const n = 8
			image := filepath.Join(llamaCppDir(t), "tools", "mtmd", "test-1.jpeg")
			cmd := exec.CommandContext(t.Context(), cli, "-m", model, "--mmproj", projector, "--image", image,
				"-p", "Describe the image.", "-n", strconv.Itoa(n), "--temp", "0", "--jinja", "-t", "2", "-c", "1024", "-ngl", "0", "-lv", "4")
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

			got, res := describe(t, model, projector, testImage(t), n)
			t.Logf("%s: %d image tokens, %d prompt tokens; %q", typ, res.MediaTokens, res.PromptTokens, got)
			assert.Equal(t, mediaTokens, res.MediaTokens, "image tokens")
			assert.Equal(t, promptTokens[1], strconv.Itoa(res.PromptTokens), "prompt tokens")
			assert.Equal(t, wantText, got, "greedy text after the image")
		})
	}
}

// Bad media and mismatched inputs are errors, and the process and the projector stay usable.
func TestMultimodalHardening(t *testing.T) {
	model, projector := projectorPair(t, synth.ProjectorMLP, 1)
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
	wav := func() []byte { // 0.1 s of silence, 16 kHz mono PCM
		var b bytes.Buffer
		le := func(v uint32, n int) {
			for i := range n {
				b.WriteByte(byte(v >> (8 * i)))
			}
		}
		b.WriteString("RIFF")
		le(36+3200, 4)
		b.WriteString("WAVEfmt ")
		le(16, 4)
		le(1, 2)
		le(1, 2)
		le(16000, 4)
		le(32000, 4)
		le(2, 2)
		le(16, 2)
		b.WriteString("data")
		le(3200, 4)
		b.Write(make([]byte, 3200))
		return b.Bytes()
	}
	for name, data := range map[string][]byte{
		"empty":                            nil,
		"text":                             []byte("not an image at all"),
		"corrupt JPEG":                     append(append([]byte{}, jpeg[:20]...), bytes.Repeat([]byte{0x55}, 5000)...),
		"absurd PNG":                       png(1<<30, 1<<30),
		"zero-size PNG":                    png(0, 10),
		"audio to a vision-only projector": wav(),
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

// A ChatSession with a projector sees the images of its messages: the reply depends on
// the image, and the conversation goes on over several turns.
func TestChatSessionMedia(t *testing.T) {
	model, projector := projectorPair(t, synth.ProjectorMLP, 1)
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
