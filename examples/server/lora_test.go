package main

import (
	"net/http"
	"testing"

	"github.com/llamago/llamago/internal/testmodel"
	"github.com/llamago/llamago/llama/gguf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// llama-server's /lora-adapters: the adapters of -lora-scaled with their scales, changed
// for every request by POST.
func TestLoRAAdapters(t *testing.T) {
	lora := testmodel.LoRA(t, testmodel.Path(t, "qwen2-tiny", gguf.TypeQ8_0))
	s := startServer(t, "-np", "1", "-lora-scaled", lora+":8")
	list := func() []loraAdapter {
		var out []loraAdapter
		require.Equal(t, http.StatusOK, s.call(t, http.MethodGet, "/lora-adapters", nil, &out))
		return out
	}
	assert.Equal(t, []loraAdapter{{ID: 0, Path: lora, Scale: 8}}, list())

	// Seeded sampling at a high temperature shows the change of the logits.
	completion := map[string]any{"model": "m", "prompt": "The quick brown fox", "max_tokens": 12, "temperature": 1.5, "top_k": 0, "seed": 42}
	text := func() any {
		code, out := s.post(t, "/v1/completions", completion)
		require.Equal(t, http.StatusOK, code, "%v", out)
		return out["choices"].([]any)[0].(map[string]any)["text"]
	}
	with := text()
	assert.Equal(t, with, text(), "seeded: the same again")
	code, out := s.post(t, "/lora-adapters", []map[string]any{{"id": 0, "scale": 0}})
	require.Equal(t, http.StatusOK, code, "%v", out)
	assert.Equal(t, []loraAdapter{{ID: 0, Path: lora, Scale: 0}}, list())
	without := text()
	assert.NotEqual(t, with, without, "the adapter's scale changed the output")
	code, out = s.post(t, "/lora-adapters", []map[string]any{{"id": 0, "scale": 8}})
	require.Equal(t, http.StatusOK, code, "%v", out)
	assert.Equal(t, with, text(), "back at scale 8")

	for _, body := range []any{
		[]map[string]any{{"id": 1, "scale": 1}},
		[]map[string]any{{"id": -1, "scale": 1}},
		[]map[string]any{{"id": 0, "scale": 1}, {"id": 0, "scale": 2}},
		map[string]any{"id": 0},
	} {
		code, out := s.post(t, "/lora-adapters", body)
		assert.Equal(t, http.StatusBadRequest, code, "%v: %v", body, out)
	}
}
