package hub

import (
	"crypto/sha256"
	"encoding/base64"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// addPlain serves data at /files/<name> with an ETag.
func (h *fakeHub) addPlain(name string, data []byte, etag string) *fakeFile {
	h.mu.Lock()
	defer h.mu.Unlock()
	f := &fakeFile{path: name, data: data, etag: etag}
	h.plain[name] = f
	return f
}

func reprDigest(data []byte) string {
	s := sha256.Sum256(data)
	return "sha-256=:" + base64.StdEncoding.EncodeToString(s[:]) + ":"
}

func TestDownloadURL(t *testing.T) {
	t.Parallel()
	h := newFakeHub(t)
	c := newClient(t, h)
	data := randomBytes(7, 200<<10)
	h.addPlain("model-Q4_0.gguf", data, `"v1"`)

	path, err := c.DownloadURL(t.Context(), h.srv.URL+"/files/model-Q4_0.gguf?download=true#frag", "")
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(c.FileCacheDir, "model-Q4_0.gguf"), path, "named after the URL's last element, as llama.cpp's -mu")
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, data, got)
	etag, err := os.ReadFile(path + ".etag")
	require.NoError(t, err)
	assert.Equal(t, `"v1"`, string(etag))
	assert.ElementsMatch(t, []string{"model-Q4_0.gguf", "model-Q4_0.gguf.etag"}, filesUnder(t, c.FileCacheDir))

	// same ETag: kept, one HEAD and no GET
	again, err := c.DownloadURL(t.Context(), h.srv.URL+"/files/model-Q4_0.gguf", "")
	require.NoError(t, err)
	assert.Equal(t, path, again)
	assert.Len(t, h.requests("GET", "/files/"), 1)

	// changed on the server: fetched again
	data2 := randomBytes(8, 100<<10)
	h.addPlain("model-Q4_0.gguf", data2, `"v2"`)
	_, err = c.DownloadURL(t.Context(), h.srv.URL+"/files/model-Q4_0.gguf", "")
	require.NoError(t, err)
	got, err = os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, data2, got)
	assert.Len(t, h.requests("GET", "/files/"), 2)

	// an explicit destination
	dst := filepath.Join(t.TempDir(), "mine.gguf")
	p, err := c.DownloadURL(t.Context(), h.srv.URL+"/files/model-Q4_0.gguf", dst)
	require.NoError(t, err)
	assert.Equal(t, dst, p)
	assert.FileExists(t, dst)
}

func TestDownloadURLDigest(t *testing.T) {
	t.Parallel()
	h := newFakeHub(t)
	c := newClient(t, h)
	data := randomBytes(9, 64<<10)
	good := h.addPlain("good.gguf", data, `"g"`)
	good.reprDigest = reprDigest(data)
	bad := h.addPlain("bad.gguf", data, `"b"`)
	bad.reprDigest = reprDigest([]byte("something else"))

	_, err := c.DownloadURL(t.Context(), h.srv.URL+"/files/good.gguf", "")
	require.NoError(t, err, "a stated digest that matches")

	_, err = c.DownloadURL(t.Context(), h.srv.URL+"/files/bad.gguf", "")
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrChecksum)
	assert.NoFileExists(t, filepath.Join(c.FileCacheDir, "bad.gguf"))
	assert.NoFileExists(t, filepath.Join(c.FileCacheDir, "bad.gguf.downloadInProgress"))
}

func TestDownloadURLResume(t *testing.T) {
	t.Parallel()
	h := newFakeHub(t)
	c := newClient(t, h)
	c.Retries = -1
	data := randomBytes(10, 150<<10)
	h.addPlain("r.gguf", data, `"r"`)
	h.cutAfter["r.gguf"] = 40_000

	_, err := c.DownloadURL(t.Context(), h.srv.URL+"/files/r.gguf", "")
	require.Error(t, err)
	path, err := c.DownloadURL(t.Context(), h.srv.URL+"/files/r.gguf", "")
	require.NoError(t, err)
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, data, got)
	gets := h.requests("GET", "/files/")
	require.Len(t, gets, 2)
	assert.Equal(t, "bytes=40000-", gets[1].Range)
	assert.Equal(t, int64(len(data)), h.bytesSent("r.gguf"))
}

func TestDownloadURLSplit(t *testing.T) {
	t.Parallel()
	h := newFakeHub(t)
	c := newClient(t, h)
	p1, p2 := randomBytes(11, 10<<10), randomBytes(12, 10<<10)
	h.addPlain("m-00001-of-00002.gguf", p1, `"1"`)
	h.addPlain("m-00002-of-00002.gguf", p2, `"2"`)
	dst := filepath.Join(t.TempDir(), "ignored-name.gguf")

	path, err := c.DownloadURL(t.Context(), h.srv.URL+"/files/m-00001-of-00002.gguf", dst)
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(filepath.Dir(dst), "m-00001-of-00002.gguf"), path, "parts keep their names, in dst's directory")
	got, err := os.ReadFile(filepath.Join(filepath.Dir(dst), "m-00002-of-00002.gguf"))
	require.NoError(t, err)
	assert.Equal(t, p2, got, "the second part came too")
}

func TestDownloadURLOfflineAndErrors(t *testing.T) {
	t.Parallel()
	h := newFakeHub(t)
	c := newClient(t, h)
	h.addPlain("o.gguf", []byte("data"), `"o"`)

	c.Offline = true
	_, err := c.DownloadURL(t.Context(), h.srv.URL+"/files/o.gguf", "")
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrNotCached)
	assert.Contains(t, err.Error(), "offline: o.gguf is not in the cache")
	assert.Empty(t, h.requests("", ""))

	c.Offline = false
	path, err := c.DownloadURL(t.Context(), h.srv.URL+"/files/o.gguf", "")
	require.NoError(t, err)
	n := len(h.requests("", ""))
	c.Offline = true
	got, err := c.DownloadURL(t.Context(), h.srv.URL+"/files/o.gguf", "")
	require.NoError(t, err)
	assert.Equal(t, path, got)
	assert.Len(t, h.requests("", ""), n, "offline makes no request")

	c.Offline = false
	_, err = c.DownloadURL(t.Context(), h.srv.URL+"/files/missing.gguf", "")
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrNotFound)
	assert.Contains(t, err.Error(), "missing.gguf: not found")

	for _, u := range []string{"ftp://host/x.gguf", "not a url", "https:///x.gguf", h.srv.URL + "/files/"} {
		_, err := c.DownloadURL(t.Context(), u, "")
		assert.ErrorIs(t, err, ErrInvalidRef, u)
	}
}

func TestDownloadURLTokenStaysOnTheHub(t *testing.T) {
	t.Parallel()
	hubSrv, other := newFakeHub(t), newFakeHub(t)
	c := newClient(t, hubSrv)
	c.Token = hubSrv.token
	hubSrv.addPlain("a.gguf", []byte("a"), `"a"`)
	other.addPlain("b.gguf", []byte("b"), `"b"`)

	_, err := c.DownloadURL(t.Context(), hubSrv.srv.URL+"/files/a.gguf", "")
	require.NoError(t, err)
	_, err = c.DownloadURL(t.Context(), other.srv.URL+"/files/b.gguf", "")
	require.NoError(t, err)
	for _, r := range hubSrv.requests("", "/files/") {
		assert.Equal(t, "Bearer "+hubSrv.token, r.Auth)
	}
	require.NotEmpty(t, other.requests("", "/files/"))
	for _, r := range other.requests("", "/files/") {
		assert.Empty(t, r.Auth, "no token for another host")
	}
}
