package main

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/llamago/llamago/examples/internal/cli/hubtest"
	"github.com/llamago/llamago/internal/synth"
	"github.com/llamago/llamago/internal/testmodel"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// An image request from the official openai client, with --mmproj: the reply (asked for
// and streamed alike), its usage counting the image tokens, and clear 400s for a remote
// URL and for bytes that are no image; without --mmproj, an image is a 400 too.
func TestImageRequests(t *testing.T) {
	model, projector := testmodel.ProjectorPair(t, synth.ProjectorMLP, 1)
	image := testmodel.MediaFile(t, "test-1.jpeg")

	type usage struct {
		PromptTokens int `json:"prompt_tokens"`
	}
	var r struct {
		Content     string            `json:"content"`
		Usage       usage             `json:"usage"`
		Streamed    string            `json:"streamed"`
		StreamUsage usage             `json:"streamUsage"`
		Refused     map[string]apiErr `json:"refused"`
	}
	s := launchServer(t, true, "-m", model, "--mmproj", projector)
	s.client(t, "image", &r, "IMAGE="+image)
	assert.NotEmpty(t, r.Content)
	assert.Equal(t, r.Content, r.Streamed, "streamed as asked for (greedy)")
	assert.Greater(t, r.Usage.PromptTokens, 64, "the image's 64 tokens are counted")
	assert.Equal(t, r.Usage, r.StreamUsage)
	require.Contains(t, r.Refused, "remote")
	assert.Equal(t, 400, r.Refused["remote"].Status)
	assert.Contains(t, r.Refused["remote"].Message, "start the server with --media-urls")
	require.Contains(t, r.Refused, "corrupt")
	assert.Equal(t, 400, r.Refused["corrupt"].Status)
	assert.Contains(t, r.Refused["corrupt"].Message, "llama: media")

	// --media-urls fetches http(s) images, within the size limit.
	photo, err := os.ReadFile(image)
	require.NoError(t, err)
	host := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/photo.jpg":
			w.Write(photo)
		case "/huge.jpg":
			w.Write(bytes.Repeat([]byte{0xff}, 2<<20))
		default:
			http.NotFound(w, r)
		}
	}))
	defer host.Close()
	fetching := launchServer(t, true, "-m", model, "--mmproj", projector, "--media-urls", "--media-max-mib", "1")
	ask := func(s *runningServer, url string) (int, map[string]any) {
		return s.post(t, "/v1/chat/completions", map[string]any{"max_tokens": 4, "temperature": 0, "messages": []any{map[string]any{"role": "user",
			"content": []any{map[string]any{"type": "image_url", "image_url": map[string]any{"url": url}}, map[string]any{"type": "text", "text": "Describe the image."}}}}})
	}
	status, body := ask(fetching, host.URL+"/photo.jpg")
	assert.Equal(t, 200, status, "%v", body)
	for path, want := range map[string]string{"/huge.jpg": "larger than 1048576 bytes", "/missing.jpg": "404"} {
		status, body = ask(fetching, host.URL+path)
		assert.Equal(t, 400, status, path)
		assert.Contains(t, fmt.Sprint(body["error"]), want, path)
	}

	plain := launchServer(t, true, "-m", model)
	status, body = plain.post(t, "/v1/chat/completions", map[string]any{"messages": []any{map[string]any{"role": "user", "content": []any{
		map[string]any{"type": "image_url", "image_url": map[string]any{"url": "data:image/png;base64,AAAA"}},
		map[string]any{"type": "text", "text": "x"}}}}})
	assert.Equal(t, 400, status)
	assert.Contains(t, body["error"].(map[string]any)["message"], "--mmproj")
}

// An audio request from the official openai client (input_audio, MP3) with an audio
// projector: the reply, its usage counting the clip's 750 tokens, and clear 400s for a
// format the server does not take, bytes that are no audio and an image.
func TestAudioRequests(t *testing.T) {
	model, projector := testmodel.ProjectorPair(t, synth.ProjectorQwen2A, 1)

	var r struct {
		Content string `json:"content"`
		Usage   struct {
			PromptTokens int `json:"prompt_tokens"`
		} `json:"usage"`
		Refused map[string]apiErr `json:"refused"`
	}
	s := launchServer(t, true, "-m", model, "--mmproj", projector, "-c", "2048")
	s.client(t, "audio", &r, "AUDIO="+testmodel.MediaFile(t, "test-2.mp3"), "IMAGE="+testmodel.MediaFile(t, "test-1.jpeg"))
	assert.NotEmpty(t, r.Content)
	layout, err := synth.ProjectorOptions{Type: synth.ProjectorQwen2A}.AudioLayout(synth.AudioSampleRate)
	require.NoError(t, err)
	assert.Greater(t, r.Usage.PromptTokens, layout.Tokens, "the clip's tokens are counted")
	for name, want := range map[string]string{"format": "want wav, mp3 or flac", "corrupt": "llama: media", "image": "does not take images"} {
		require.Contains(t, r.Refused, name)
		assert.Equal(t, 400, r.Refused[name].Status, name)
		assert.Contains(t, r.Refused[name].Message, want, name)
	}
}

// -hf brings the repository's projector along (as llama-server -hf): image requests are
// served; with --no-mmproj the model comes alone and an image is a 400.
func TestImageRequestsFromHub(t *testing.T) {
	model, projector := testmodel.ProjectorPair(t, synth.ProjectorMLP, 1)
	photo, err := os.ReadFile(testmodel.MediaFile(t, "test-1.jpeg"))
	require.NoError(t, err)

	h := hubtest.New(t)
	h.AddFile(t, "test/vlm-GGUF", "mmproj-vlm-F16.gguf", projector)
	h.AddFile(t, "test/vlm-GGUF", "vlm-F16.gguf", model)
	ask := func(s *runningServer) (int, map[string]any) {
		return s.post(t, "/v1/chat/completions", map[string]any{"max_tokens": 4, "temperature": 0, "messages": []any{map[string]any{"role": "user",
			"content": []any{map[string]any{"type": "image_url", "image_url": map[string]any{"url": "data:image/jpeg;base64," + base64.StdEncoding.EncodeToString(photo)}},
				map[string]any{"type": "text", "text": "Describe the image."}}}}})
	}

	h.Setenv(t, t.TempDir())
	s := launchServer(t, true, "-hf", "test/vlm-GGUF")
	status, body := ask(s)
	assert.Equal(t, 200, status, "%v", body)
	assert.Contains(t, s.stderr.String(), "msg=\"multimodal projector loaded\"")
	assert.Contains(t, s.stderr.String(), "mmproj-vlm-F16.gguf vision=true")
	assert.Equal(t, []string{"test/vlm-GGUF/vlm-F16.gguf", "test/vlm-GGUF/mmproj-vlm-F16.gguf"}, h.Downloads())

	h.Setenv(t, t.TempDir())
	plain := launchServer(t, true, "-hf", "test/vlm-GGUF", "--no-mmproj")
	status, body = ask(plain)
	assert.Equal(t, 400, status)
	assert.Contains(t, fmt.Sprint(body["error"]), "--mmproj")
	assert.Equal(t, []string{"test/vlm-GGUF/vlm-F16.gguf", "test/vlm-GGUF/mmproj-vlm-F16.gguf", "test/vlm-GGUF/vlm-F16.gguf"}, h.Downloads(),
		"the model once more, its projector not")
}
