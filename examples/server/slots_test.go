package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// call sends a request (with body as JSON, unless nil) and decodes the JSON answer into out.
func (s *runningServer) call(t *testing.T, method, path string, body, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		require.NoError(t, err)
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, s.url+path, rd)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+testKey)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(raw, out), "%s", raw)
	return resp.StatusCode
}

// post sends a JSON body and returns the status and the JSON object answered.
func (s *runningServer) post(t *testing.T, path string, body any) (int, map[string]any) {
	t.Helper()
	var out map[string]any
	return s.call(t, http.MethodPost, path, body, &out), out
}

// llama-server's slot actions: a slot saved to a file in -slot-save-path and restored
// serves the same prompt from its cache; names that leave the directory are refused.
func TestSlotSaveRestore(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	s := startServer(t, "-np", "1", "-slot-save-path", dir)
	completion := map[string]any{"model": "m", "prompt": "The quick brown fox jumps over the lazy dog", "max_tokens": 4, "temperature": 0}

	code, first := s.post(t, "/v1/completions", completion)
	require.Equal(t, http.StatusOK, code, "%v", first)
	code, saved := s.post(t, "/slots/0?action=save", map[string]any{"filename": "fox.bin"})
	require.Equal(t, http.StatusOK, code, "%v", saved)
	assert.Equal(t, "fox.bin", saved["filename"])
	assert.Greater(t, saved["n_saved"], float64(8))
	fi, err := os.Stat(filepath.Join(dir, "fox.bin"))
	require.NoError(t, err)
	assert.Equal(t, float64(fi.Size()), saved["n_written"])

	code, erased := s.post(t, "/slots/0?action=erase", nil)
	require.Equal(t, http.StatusOK, code, "%v", erased)
	assert.Equal(t, saved["n_saved"], erased["n_erased"])
	code, restored := s.post(t, "/slots/0?action=restore", map[string]any{"filename": "fox.bin"})
	require.Equal(t, http.StatusOK, code, "%v", restored)
	assert.Equal(t, saved["n_saved"], restored["n_restored"])
	assert.Equal(t, saved["n_written"], restored["n_read"])

	code, again := s.post(t, "/v1/completions", completion)
	require.Equal(t, http.StatusOK, code, "%v", again)
	assert.Equal(t, first["choices"], again["choices"], "the restored cache gives the same completion")
	details, ok := again["usage"].(map[string]any)["prompt_tokens_details"].(map[string]any)
	require.True(t, ok, "%v", again["usage"])
	assert.Positive(t, details["cached_tokens"], "the prompt came from the restored cache")

	// Names that would leave the directory, links planted in it, and other bad requests.
	require.NoError(t, os.WriteFile(filepath.Join(outside, "secret.bin"), []byte("x"), 0o644))
	require.NoError(t, os.Symlink(filepath.Join(outside, "secret.bin"), filepath.Join(dir, "link.bin")))
	for _, name := range []string{"../escape.bin", "/etc/passwd", "a/b.bin", "..", ".", "", ".hidden", "a\\b", "x\x00y",
		filepath.Join(outside, "secret.bin")} {
		for _, action := range []string{"save", "restore"} {
			code, out := s.post(t, "/slots/0?action="+action, map[string]any{"filename": name})
			assert.Equal(t, http.StatusBadRequest, code, "%s %q: %v", action, name, out)
		}
	}
	code, out := s.post(t, "/slots/0?action=restore", map[string]any{"filename": "link.bin"})
	assert.Equal(t, http.StatusNotFound, code, "a link is not followed: %v", out)
	code, out = s.post(t, "/slots/0?action=save", map[string]any{"filename": "link.bin"})
	assert.Equal(t, http.StatusOK, code, "%v", out)
	secret, err := os.ReadFile(filepath.Join(outside, "secret.bin"))
	require.NoError(t, err)
	assert.Equal(t, "x", string(secret), "saving over a link replaces the link, not its target")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	assert.ElementsMatch(t, []string{"fox.bin", "link.bin"}, names, "no temporary files left")
	_, err = os.ReadDir(outside)
	require.NoError(t, err)

	require.NoError(t, os.WriteFile(filepath.Join(dir, "garbage.bin"), bytes.Repeat([]byte{7}, 100), 0o644))
	for path, want := range map[string]int{
		"/slots/0?action=restore": http.StatusNotFound, // missing.bin
		"/slots/1?action=save":    http.StatusBadRequest,
		"/slots/x?action=save":    http.StatusBadRequest,
		"/slots/0?action=delete":  http.StatusBadRequest,
	} {
		code, out := s.post(t, path, map[string]any{"filename": "missing.bin"})
		assert.Equal(t, want, code, "%s: %v", path, out)
	}
	code, out = s.post(t, "/slots/0?action=restore", map[string]any{"filename": "garbage.bin"})
	assert.Equal(t, http.StatusBadRequest, code, "%v", out)
	assert.Contains(t, fmt.Sprint(out), "invalid saved state")

	off := startServer(t, "-np", "1")
	code, out = off.post(t, "/slots/0?action=save", map[string]any{"filename": "fox.bin"})
	assert.Equal(t, http.StatusNotImplemented, code, "%v", out)
}
