package main

import (
	"path/filepath"
	"testing"

	"github.com/llamago/llamago/internal/llamacpp"
	"github.com/llamago/llamago/internal/synth"
	"github.com/llamago/llamago/internal/testmodel"
	"github.com/llamago/llamago/llama/gguf"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// An image request from the official openai client, with --mmproj: the reply (asked for
// and streamed alike), its usage counting the image tokens, and clear 400s for a remote
// URL and for bytes that are no image; without --mmproj, an image is a 400 too.
func TestImageRequests(t *testing.T) {
	opts, err := synth.DefaultProjector(synth.ProjectorMLP)
	require.NoError(t, err)
	dir := t.TempDir()
	model, projector := filepath.Join(dir, "vlm.gguf"), filepath.Join(dir, "mmproj.gguf")
	require.NoError(t, synth.WriteTextFile(model, opts, synth.Options{VocabPath: testmodel.VocabPath(t, "qwen2"), Type: gguf.TypeF16, Seed: 1}))
	require.NoError(t, synth.WriteProjectorFile(projector, opts))
	llamaCpp, err := llamacpp.Dir()
	require.NoError(t, err)
	image := filepath.Join(llamaCpp, "tools", "mtmd", "test-1.jpeg")

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
	assert.Contains(t, r.Refused["remote"].Message, "only data: URLs")
	require.Contains(t, r.Refused, "corrupt")
	assert.Equal(t, 400, r.Refused["corrupt"].Status)
	assert.Contains(t, r.Refused["corrupt"].Message, "llama: media")

	plain := launchServer(t, true, "-m", model)
	status, body := plain.post(t, "/v1/chat/completions", map[string]any{"messages": []any{map[string]any{"role": "user", "content": []any{
		map[string]any{"type": "image_url", "image_url": map[string]any{"url": "data:image/png;base64,AAAA"}},
		map[string]any{"type": "text", "text": "x"}}}}})
	assert.Equal(t, 400, status)
	assert.Contains(t, body["error"].(map[string]any)["message"], "--mmproj")
}
