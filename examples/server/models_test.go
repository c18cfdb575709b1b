package main

import (
	"bufio"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/llamago/llamago/internal/testmodel"
	"github.com/llamago/llamago/llama/gguf"
)

// Several models: requests choose by "model"; the others load on demand within the
// memory budget, the least recently used idle one unloaded, never one that serves; an
// unknown model is OpenAI's 404.
func TestSeveralModels(t *testing.T) {
	first := testmodel.Path(t, "qwen2-tiny", gguf.TypeQ8_0)
	llamaTiny := testmodel.Path(t, "llama-tiny", gguf.TypeQ8_0)
	mistral := testmodel.Path(t, "mistral-tiny", gguf.TypeQ8_0)
	size := func(p string) int64 {
		fi, err := os.Stat(p)
		require.NoError(t, err)
		return fi.Size()
	}
	// Room for the first model and either other one, not for all three.
	const mib = 1 << 20
	budget := (size(first) + max(size(llamaTiny), size(mistral)) + mib - 1) / mib
	require.Less(t, budget*mib, size(first)+size(llamaTiny)+size(mistral), "the test needs models that do not all fit")
	s := launchServer(t, true, "-model", first, "-model", llamaTiny, "-model", mistral, "-models-budget-mib", strconv.FormatInt(budget, 10))
	ids := []string{modelID(first), modelID(llamaTiny), modelID(mistral)}

	loaded := func() map[string]bool {
		var list struct {
			Data []struct {
				ID     string
				Loaded bool
			}
		}
		require.Equal(t, http.StatusOK, s.call(t, http.MethodGet, "/v1/models", nil, &list))
		out := map[string]bool{}
		for _, m := range list.Data {
			out[m.ID] = m.Loaded
		}
		return out
	}
	assert.Equal(t, map[string]bool{ids[0]: true, ids[1]: false, ids[2]: false}, loaded())
	var viaClient struct {
		IDs     []string `json:"ids"`
		One     string   `json:"one"`
		Missing apiErr   `json:"missing"`
	}
	s.client(t, "models", &viaClient) // the openai package lists them, retrieves the first, gets 404 for another
	assert.Equal(t, ids, viaClient.IDs)
	assert.Equal(t, ids[0], viaClient.One)
	assert.Equal(t, 404, viaClient.Missing.Status)

	chat := func(model string) (int, string) {
		var r struct {
			Model string
			Error struct{ Code string }
		}
		status := s.call(t, http.MethodPost, "/v1/chat/completions", map[string]any{"model": model, "max_tokens": 2,
			"messages": []map[string]string{{"role": "user", "content": "hi"}}}, &r)
		if status != http.StatusOK {
			return status, r.Error.Code
		}
		return status, r.Model
	}
	for _, id := range []string{ids[1], ids[0], ""} {
		status, got := chat(id)
		require.Equal(t, http.StatusOK, status, id)
		if id != "" {
			assert.Equal(t, id, got)
		}
	}
	assert.Equal(t, map[string]bool{ids[0]: true, ids[1]: true, ids[2]: false}, loaded())
	status, _ := chat(ids[2])
	require.Equal(t, http.StatusOK, status)
	assert.Equal(t, map[string]bool{ids[0]: true, ids[1]: false, ids[2]: true}, loaded(), "the least recently used idle model made room")

	status, code := chat("no-such-model")
	assert.Equal(t, http.StatusNotFound, status)
	assert.Equal(t, "model_not_found", code)

	// A stream on the third model holds it: the second cannot load beside it meanwhile.
	body := `{"model": "` + ids[2] + `", "stream": true, "max_tokens": 3000, "messages": [{"role": "user", "content": "go on"}]}`
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, s.url+"/v1/chat/completions", strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+testKey)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	_, err = bufio.NewReader(resp.Body).ReadString('\n') // streaming
	require.NoError(t, err)
	status, _ = chat(ids[1])
	assert.Equal(t, http.StatusServiceUnavailable, status, "never unloaded while serving")
	resp.Body.Close() // the client leaves: its request ends, the model is idle again
	require.Eventually(t, func() bool { status, _ := chat(ids[1]); return status == http.StatusOK }, time.Minute, 50*time.Millisecond)
	assert.Equal(t, map[string]bool{ids[0]: true, ids[1]: true, ids[2]: false}, loaded())
}
