package hub

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newClient(t *testing.T, h *fakeHub) *Client {
	return &Client{
		Endpoint:     h.srv.URL, // no trailing slash on purpose
		CacheDir:     t.TempDir(),
		FileCacheDir: t.TempDir(),
		retryDelay:   time.Millisecond,
	}
}

// progressLog records Progress calls; safe to read after the download returned.
type progressLog struct {
	mu sync.Mutex
	ps []Progress
}

func (l *progressLog) add(p Progress) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ps = append(l.ps, p)
}

// filesUnder lists regular files and links under dir, relative, slash-separated.
func filesUnder(t *testing.T, dir string) []string {
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if !os.IsNotExist(err) {
		require.NoError(t, err)
	}
	return out
}

func TestResolveDefaultQuant(t *testing.T) {
	t.Parallel()
	h := newFakeHub(t)
	c := newClient(t, h)
	files, err := c.Resolve(t.Context(), "test/tiny-GGUF")
	require.NoError(t, err)
	require.Len(t, files, 1)
	f, want := files[0], h.file("test/tiny-GGUF", "tiny-Q4_K_M.gguf")
	commit := commitID("tiny")
	assert.Equal(t, "tiny-Q4_K_M.gguf", f.Path, "Q4_K_M is the default, though F16 is listed first")
	assert.Equal(t, "test/tiny-GGUF", f.Repo)
	assert.Equal(t, commit, f.Commit, "main's commit, not the other branches'")
	assert.Equal(t, int64(len(want.data)), f.Size)
	assert.Equal(t, want.sha256(), f.SHA256)
	assert.Equal(t, want.sha256(), f.OID)
	assert.Equal(t, h.srv.URL+"/test/tiny-GGUF/resolve/"+commit+"/tiny-Q4_K_M.gguf", f.URL)
	assert.Equal(t, filepath.Join(c.CacheDir, "models--test--tiny-GGUF", "snapshots", commit, "tiny-Q4_K_M.gguf"), f.CachePath)
	assert.Empty(t, filesUnder(t, c.CacheDir), "Resolve writes nothing")
	assert.Len(t, h.requests("GET", "/api/models/test/tiny-GGUF/refs"), 1)
	assert.Len(t, h.requests("GET", "/api/models/test/tiny-GGUF/tree/"+commit), 1)
}

func TestResolveChoosesLikeLlamaCpp(t *testing.T) {
	t.Parallel()
	h := newFakeHub(t)
	c := newClient(t, h)
	for ref, want := range map[string]string{
		"test/tiny-GGUF:Q8_0":   "tiny-Q8_0.gguf",
		"test/tiny-GGUF:q8_0":   "tiny-Q8_0.gguf", // case-insensitive
		"test/tiny-GGUF:f16":    "tiny-F16.gguf",
		"test/tiny-GGUF:Q4_K_S": "tiny-Q4_K_S.gguf",
		"test/tiny-GGUF:q4_k_m": "tiny-Q4_K_M.gguf", // not mmproj-tiny-Q4_K_M.gguf, listed first
		"test/noquant-GGUF":     "model.gguf",       // no default quant: first model, not the mmproj before it
		"test/unsafe-GGUF":      "good-Q8_0.gguf",   // ../ and absolute paths are skipped; Q8_0 is the second default
	} {
		files, err := c.Resolve(t.Context(), ref)
		require.NoError(t, err, ref)
		require.Len(t, files, 1, ref)
		assert.Equal(t, want, files[0].Path, ref)
	}
}

func TestResolveTreePages(t *testing.T) {
	t.Parallel()
	h := newFakeHub(t)
	h.pageSize = 2
	c := newClient(t, h)
	files, err := c.Resolve(t.Context(), "test/tiny-GGUF:Q8_0")
	require.NoError(t, err)
	require.Len(t, files, 1)
	assert.Equal(t, "tiny-Q8_0.gguf", files[0].Path, "found on the last page")
	assert.Len(t, h.requests("GET", "/tree/"), 4, "7 entries, 2 per page")
}

func TestResolveSplitModel(t *testing.T) {
	t.Parallel()
	h := newFakeHub(t)
	c := newClient(t, h)
	files, err := c.Resolve(t.Context(), "test/split-GGUF")
	require.NoError(t, err)
	require.Len(t, files, 3)
	for i, f := range files {
		want := h.file("test/split-GGUF", "Q4_K_M/big-Q4_K_M-0000"+string(rune('1'+i))+"-of-00003.gguf")
		assert.Equal(t, want.path, f.Path, "parts in order")
		assert.Equal(t, want.sha256(), f.SHA256)
		assert.Equal(t, int64(len(want.data)), f.Size)
	}

	path, err := c.Download(t.Context(), "test/split-GGUF:Q4_K_M")
	require.NoError(t, err)
	assert.Equal(t, files[0].CachePath, path, "the first part is what llama.cpp loads")
	for _, f := range files {
		got, err := os.ReadFile(f.CachePath)
		require.NoError(t, err)
		assert.Equal(t, h.file("test/split-GGUF", f.Path).data, got, f.Path)
	}

	one, err := c.Resolve(t.Context(), "test/split-GGUF:Q8_0")
	require.NoError(t, err)
	require.Len(t, one, 1)
	assert.Equal(t, "big-Q8_0.gguf", one[0].Path)
}

func TestResolveErrors(t *testing.T) {
	t.Parallel()
	h := newFakeHub(t)
	c := newClient(t, h)

	_, err := c.Resolve(t.Context(), "test/tiny-GGUF:Q3_K_S")
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrNotFound)
	assert.Contains(t, err.Error(), `quant "Q3_K_S" not found in test/tiny-GGUF`)
	assert.Contains(t, err.Error(), "available quants: F16, Q4_K_M, Q4_K_S, Q8_0", "mmproj is not a quant of the model")

	_, err = c.Download(t.Context(), "test/missing-GGUF")
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrNotFound)
	assert.Contains(t, err.Error(), "repository test/missing-GGUF not found")
	assert.Contains(t, err.Error(), "404")

	_, err = c.Resolve(t.Context(), "test/broken-split-GGUF")
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrNotFound)
	assert.Contains(t, err.Error(), `part "big-Q4_K_M-00002-of-00003.gguf" not found`)

	_, err = c.DownloadFile(t.Context(), "test/tiny-GGUF", "nope.gguf")
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrNotFound)
	assert.Contains(t, err.Error(), "tiny-Q8_0.gguf", "lists the GGUF files there are")

	before := len(h.requests("", ""))
	for _, ref := range []string{"", "noslash", "a/b/c", "../x", "user/repo:"} {
		_, err := c.Download(t.Context(), ref)
		assert.ErrorIs(t, err, ErrInvalidRef, ref)
	}
	_, err = c.DownloadFile(t.Context(), "test/tiny-GGUF", "../escape.gguf")
	assert.ErrorIs(t, err, ErrInvalidRef)
	assert.Len(t, h.requests("", ""), before, "bad references make no request")
}

func TestDownload(t *testing.T) {
	t.Parallel()
	h := newFakeHub(t)
	c := newClient(t, h)
	var log progressLog
	c.Progress = log.add
	want := h.file("test/tiny-GGUF", "tiny-Q4_K_M.gguf")
	commit := commitID("tiny")

	path, err := c.Download(t.Context(), "test/tiny-GGUF")
	require.NoError(t, err)
	repoDir := filepath.Join(c.CacheDir, "models--test--tiny-GGUF")
	assert.Equal(t, filepath.Join(repoDir, "snapshots", commit, "tiny-Q4_K_M.gguf"), path)
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, want.data, got)

	// llama.cpp's (and huggingface_hub's) layout
	target, err := os.Readlink(path)
	require.NoError(t, err, "the snapshot entry is a link")
	assert.Equal(t, filepath.Join("..", "..", "blobs", want.sha256()), target)
	ref, err := os.ReadFile(filepath.Join(repoDir, "refs", "main"))
	require.NoError(t, err)
	assert.Equal(t, commit, string(ref))
	assert.ElementsMatch(t, []string{
		"blobs/" + want.sha256(),
		"refs/main",
		"snapshots/" + commit + "/tiny-Q4_K_M.gguf",
	}, filesUnder(t, repoDir), "no partial or temporary files left")

	require.GreaterOrEqual(t, len(log.ps), 2)
	first, last := log.ps[0], log.ps[len(log.ps)-1]
	assert.Equal(t, Progress{Name: "tiny-Q4_K_M.gguf", Total: modelSize}, first)
	assert.Equal(t, Progress{Name: "tiny-Q4_K_M.gguf", Downloaded: modelSize, Total: modelSize, Done: true}, last)
	for i := 1; i < len(log.ps); i++ {
		assert.GreaterOrEqual(t, log.ps[i].Downloaded, log.ps[i-1].Downloaded, "progress never goes back")
	}
	assert.Len(t, h.requests("GET", "/resolve/"), 1)
}

func TestDownloadFileByName(t *testing.T) {
	t.Parallel()
	h := newFakeHub(t)
	c := newClient(t, h)
	path, err := c.DownloadFile(t.Context(), "test/tiny-GGUF:Q8_0", "README.md") // the file overrides the quant
	require.NoError(t, err)
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, "# tiny\n", string(got))
	target, err := os.Readlink(path)
	require.NoError(t, err)
	assert.Equal(t, h.file("test/tiny-GGUF", "README.md").gitOID(), filepath.Base(target), "non-LFS blobs are named by git oid (and checked against it)")

	path, err = c.DownloadFile(t.Context(), "test/split-GGUF", "Q4_K_M/big-Q4_K_M-00002-of-00003.gguf")
	require.NoError(t, err)
	assert.Equal(t, "big-Q4_K_M-00001-of-00003.gguf", filepath.Base(path), "a part brings the whole model; the first part is returned")
}

// fetches are the entry points that bring a file through the same download: a model,
// and the projector beside it (cut: where the resume tests break the connection).
var fetches = []struct {
	name, file string
	cut        int64
	get        func(ctx context.Context, c *Client) (string, error)
}{
	{"model", "tiny-Q4_K_M.gguf", 100_000, func(ctx context.Context, c *Client) (string, error) {
		return c.Download(ctx, "test/tiny-GGUF")
	}},
	{"projector", "mmproj-tiny-Q4_K_M.gguf", 5000, func(ctx context.Context, c *Client) (string, error) {
		return c.DownloadProjector(ctx, "test/tiny-GGUF", "")
	}},
}

func TestDownloadChecksumMismatch(t *testing.T) {
	t.Parallel()
	for _, f := range fetches {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			h := newFakeHub(t)
			h.corrupt[f.file] = true
			c := newClient(t, h)
			_, err := f.get(t.Context(), c)
			require.Error(t, err)
			assert.ErrorIs(t, err, ErrChecksum)
			assert.NotErrorIs(t, err, ErrNoProjector, "a bad download is a failure, not a missing projector")
			assert.Contains(t, err.Error(), f.file+": sha256 mismatch")
			assert.Contains(t, err.Error(), "want "+h.file("test/tiny-GGUF", f.file).sha256())
			assert.Empty(t, filesUnder(t, c.CacheDir), "no blob, partial file, snapshot entry or ref")
			assert.Len(t, h.requests("GET", "/resolve/"), 1, "a checksum error is not retried")
		})
	}
}

func TestDownloadResumesAfterInterruption(t *testing.T) {
	t.Parallel()
	for _, f := range fetches {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			h := newFakeHub(t)
			h.cutAfter[f.file] = f.cut
			c := newClient(t, h)
			c.Retries = -1
			want := h.file("test/tiny-GGUF", f.file)

			_, err := f.get(t.Context(), c)
			require.Error(t, err, "the connection was dropped mid-body")
			assert.Contains(t, err.Error(), "broke off")
			partial := filepath.Join(c.CacheDir, "models--test--tiny-GGUF", "blobs", want.sha256()+".downloadInProgress")
			st, err := os.Stat(partial)
			require.NoError(t, err, "the partial file stays for resuming")
			assert.Equal(t, f.cut, st.Size())

			path, err := f.get(t.Context(), c)
			require.NoError(t, err)
			got, err := os.ReadFile(path)
			require.NoError(t, err)
			assert.Equal(t, want.data, got)

			gets := h.requests("GET", "/resolve/")
			require.Len(t, gets, 2)
			assert.Empty(t, gets[0].Range)
			assert.Equal(t, fmt.Sprintf("bytes=%d-", f.cut), gets[1].Range, "the second download continues the partial file")
			assert.Equal(t, int64(len(want.data)), h.bytesSent(f.file), "no byte was sent twice")
			assert.NoFileExists(t, partial)
		})
	}
}

func TestDownloadRetriesWithinOneCall(t *testing.T) {
	t.Parallel()
	h := newFakeHub(t)
	h.cutAfter["tiny-Q4_K_M.gguf"] = 64 << 10
	c := newClient(t, h) // default Retries
	path, err := c.Download(t.Context(), "test/tiny-GGUF")
	require.NoError(t, err)
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, h.file("test/tiny-GGUF", "tiny-Q4_K_M.gguf").data, got)
	gets := h.requests("GET", "/resolve/")
	require.Len(t, gets, 2)
	assert.Equal(t, "bytes=65536-", gets[1].Range)
	assert.Equal(t, int64(modelSize), h.bytesSent("tiny-Q4_K_M.gguf"))
}

// writePartial leaves a partial download of tiny-Q4_K_M.gguf in c's cache.
func writePartial(t *testing.T, c *Client, h *fakeHub, data []byte) string {
	want := h.file("test/tiny-GGUF", "tiny-Q4_K_M.gguf")
	p := filepath.Join(c.CacheDir, "models--test--tiny-GGUF", "blobs", want.sha256()+".downloadInProgress")
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
	require.NoError(t, os.WriteFile(p, data, 0o644))
	return p
}

func TestDownloadRestartsWhenRangeIgnored(t *testing.T) {
	t.Parallel()
	h := newFakeHub(t)
	h.ignoreRange = true
	c := newClient(t, h)
	writePartial(t, c, h, []byte(strings.Repeat("x", 5000))) // wrong bytes: only a restart can fix them
	path, err := c.Download(t.Context(), "test/tiny-GGUF")
	require.NoError(t, err)
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, h.file("test/tiny-GGUF", "tiny-Q4_K_M.gguf").data, got)
	gets := h.requests("GET", "/resolve/")
	require.Len(t, gets, 1)
	assert.Equal(t, "bytes=5000-", gets[0].Range, "asked to resume; the 200 answer restarted the file")
}

func TestDownloadBadPartialIsDeleted(t *testing.T) {
	t.Parallel()
	h := newFakeHub(t)
	c := newClient(t, h)
	partial := writePartial(t, c, h, []byte(strings.Repeat("x", 5000)))
	_, err := c.Download(t.Context(), "test/tiny-GGUF")
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrChecksum, "a resumed file with a bad prefix fails the sha256 check")
	assert.NoFileExists(t, partial)

	path, err := c.Download(t.Context(), "test/tiny-GGUF")
	require.NoError(t, err, "the next attempt starts clean")
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, h.file("test/tiny-GGUF", "tiny-Q4_K_M.gguf").data, got)
}

func TestDownloadCompletePartialIsVerifiedNotFetched(t *testing.T) {
	t.Parallel()
	h := newFakeHub(t)
	c := newClient(t, h)
	writePartial(t, c, h, h.file("test/tiny-GGUF", "tiny-Q4_K_M.gguf").data)
	path, err := c.Download(t.Context(), "test/tiny-GGUF")
	require.NoError(t, err)
	assert.FileExists(t, path)
	assert.Empty(t, h.requests("GET", "/resolve/"))
}

func TestDownloadCachedIsNotFetchedAgain(t *testing.T) {
	t.Parallel()
	h := newFakeHub(t)
	c := newClient(t, h)
	path, err := c.Download(t.Context(), "test/tiny-GGUF")
	require.NoError(t, err)

	var log progressLog
	c.Progress = log.add
	again, err := c.Download(t.Context(), "test/tiny-GGUF:q4_k_m")
	require.NoError(t, err)
	assert.Equal(t, path, again)
	assert.Len(t, h.requests("GET", "/resolve/"), 1, "downloaded once")
	assert.Equal(t, []Progress{{Name: "tiny-Q4_K_M.gguf", Downloaded: modelSize, Total: modelSize, Cached: true, Done: true}}, log.ps)

	// a blob without its snapshot link (e.g. another snapshot's) is reused
	require.NoError(t, os.Remove(path))
	again, err = c.Download(t.Context(), "test/tiny-GGUF")
	require.NoError(t, err)
	assert.Equal(t, path, again)
	assert.FileExists(t, path)
	assert.Len(t, h.requests("GET", "/resolve/"), 1)

	// llama.cpp's degraded layout (no symlinks: the blob moved into the snapshot) is used as is
	blob := filepath.Join(c.CacheDir, "models--test--tiny-GGUF", "blobs", h.file("test/tiny-GGUF", "tiny-Q4_K_M.gguf").sha256())
	require.NoError(t, os.Remove(path))
	require.NoError(t, os.Rename(blob, path))
	again, err = c.Download(t.Context(), "test/tiny-GGUF")
	require.NoError(t, err)
	assert.Equal(t, path, again)
	assert.Len(t, h.requests("GET", "/resolve/"), 1)
	assert.NoFileExists(t, blob, "nothing fetched into blobs/")
	require.NoError(t, os.Rename(path, blob))
	require.NoError(t, os.Symlink(filepath.Join("..", "..", "blobs", filepath.Base(blob)), path))

	// a blob of the wrong size is fetched again
	require.NoError(t, os.Truncate(blob, 10))
	_, err = c.Download(t.Context(), "test/tiny-GGUF")
	require.NoError(t, err)
	st, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, int64(modelSize), st.Size())
	assert.Len(t, h.requests("GET", "/resolve/"), 2)
}

func TestConcurrentDownloadsOfOneFile(t *testing.T) {
	t.Parallel()
	h := newFakeHub(t)
	c := newClient(t, h)
	const n = 4
	paths, errs := make([]string, n), make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { paths[i], errs[i] = c.Download(t.Context(), "test/tiny-GGUF") })
	}
	wg.Wait()
	for i := range n {
		require.NoError(t, errs[i])
		assert.Equal(t, paths[0], paths[i])
	}
	assert.Len(t, h.requests("GET", "/resolve/"), 1, "one transfer; the others found it cached")
}

func TestOffline(t *testing.T) {
	t.Parallel()
	h := newFakeHub(t)
	c := newClient(t, h)
	c.Offline = true

	_, err := c.Download(t.Context(), "test/tiny-GGUF")
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrNotCached)
	assert.Contains(t, err.Error(), "offline: test/tiny-GGUF is not in the cache")
	assert.Contains(t, err.Error(), "models--test--tiny-GGUF")
	assert.Empty(t, h.requests("", ""), "offline makes no request")

	c.Offline = false
	path, err := c.Download(t.Context(), "test/tiny-GGUF")
	require.NoError(t, err)
	_, err = c.Download(t.Context(), "test/split-GGUF")
	require.NoError(t, err)
	online := len(h.requests("", ""))

	c.Offline = true
	var log progressLog
	c.Progress = log.add
	got, err := c.Download(t.Context(), "test/tiny-GGUF:Q4_K_M")
	require.NoError(t, err)
	assert.Equal(t, path, got)
	assert.True(t, log.ps[0].Cached)
	files, err := c.Resolve(t.Context(), "test/tiny-GGUF")
	require.NoError(t, err)
	require.Len(t, files, 1)
	want := h.file("test/tiny-GGUF", "tiny-Q4_K_M.gguf")
	assert.Equal(t, want.sha256(), files[0].SHA256, "the digest comes from the blob's name")
	assert.Equal(t, int64(len(want.data)), files[0].Size)

	_, err = c.Download(t.Context(), "test/tiny-GGUF:Q8_0")
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrNotCached)
	assert.Contains(t, err.Error(), `offline: test/tiny-GGUF:Q8_0 is not in the cache`)
	assert.Contains(t, err.Error(), `quant "Q8_0" not found`)
	assert.Contains(t, err.Error(), "available quants: Q4_K_M")

	// a split model missing a part names the part
	part2 := filepath.Join(c.CacheDir, "models--test--split-GGUF", "snapshots", commitID("split"), "Q4_K_M", "big-Q4_K_M-00002-of-00003.gguf")
	require.NoError(t, os.Remove(part2))
	_, err = c.Download(t.Context(), "test/split-GGUF")
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrNotCached)
	assert.Contains(t, err.Error(), "Q4_K_M/big-Q4_K_M-00002-of-00003.gguf")
	assert.Len(t, h.requests("", ""), online, "offline makes no request")
}

func TestUnreachableHubFallsBackToCache(t *testing.T) {
	t.Parallel()
	h := newFakeHub(t)
	c := newClient(t, h)
	path, err := c.Download(t.Context(), "test/tiny-GGUF")
	require.NoError(t, err)
	h.srv.Close()

	got, err := c.Download(t.Context(), "test/tiny-GGUF")
	require.NoError(t, err, "as llama.cpp, the cache serves when the hub does not answer")
	assert.Equal(t, path, got)

	_, err = c.Download(t.Context(), "test/tiny-GGUF:Q8_0")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "cannot reach the hub")
}

func TestToken(t *testing.T) {
	t.Parallel()
	h := newFakeHub(t)
	c := newClient(t, h)

	_, err := c.Download(t.Context(), "test/private-GGUF")
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrUnauthorized)
	assert.Contains(t, err.Error(), "set HF_TOKEN")
	assert.Contains(t, err.Error(), "401")

	c.Token = "hf_wrongwrongwrongwrongwrongwrongwrong"
	_, err = c.Download(t.Context(), "test/private-GGUF")
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrUnauthorized)
	assert.NotContains(t, err.Error(), c.Token, "the token never appears in errors")

	c.Token = h.token
	path, err := c.Download(t.Context(), "test/private-GGUF")
	require.NoError(t, err)
	assert.FileExists(t, path)
	for _, r := range h.requests("", "private")[2:] { // after the two refused tries
		assert.Equal(t, "Bearer "+h.token, r.Auth, r.Path)
	}
	assert.NotEmpty(t, h.requests("GET", "/resolve/"))
}

func TestCancelMidDownload(t *testing.T) {
	t.Parallel()
	h := newFakeHub(t)
	const stall = 50_000
	h.stallAfter["tiny-Q4_K_M.gguf"] = stall
	h.stalled = make(chan struct{})
	c := newClient(t, h)
	partial := filepath.Join(c.CacheDir, "models--test--tiny-GGUF", "blobs",
		h.file("test/tiny-GGUF", "tiny-Q4_K_M.gguf").sha256()+".downloadInProgress")

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() {
		<-h.stalled
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) { // wait until the bytes sent are on disk
			if st, err := os.Stat(partial); err == nil && st.Size() == stall {
				break
			}
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	_, err := c.Download(ctx, "test/tiny-GGUF")
	require.Error(t, err)
	assert.ErrorIs(t, err, context.Canceled)
	assert.Contains(t, err.Error(), "partial file kept")
	st, err := os.Stat(partial)
	require.NoError(t, err)
	assert.Equal(t, int64(stall), st.Size())
	assert.Len(t, h.requests("GET", "/resolve/"), 1, "a cancelled download is not retried")

	path, err := c.Download(t.Context(), "test/tiny-GGUF")
	require.NoError(t, err)
	assert.FileExists(t, path)
	assert.Equal(t, "bytes=50000-", h.requests("GET", "/resolve/")[1].Range)

	done, cancel2 := context.WithCancel(t.Context())
	cancel2()
	before := len(h.requests("", ""))
	_, err = c.Download(done, "test/tiny-GGUF:Q8_0")
	assert.ErrorIs(t, err, context.Canceled)
	assert.Len(t, h.requests("", ""), before, "a cancelled context makes no request")
}
