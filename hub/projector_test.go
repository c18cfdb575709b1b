package hub

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// addVLMRepos adds multimodal repositories to h: test/vlm-GGUF lists projectors of
// several types in the hub's (name) order, test/nested-GGUF keeps models and projectors
// in directories.
func addVLMRepos(h *fakeHub) {
	seed := uint64(100)
	model := func(p string, n int) *fakeFile {
		seed++
		return &fakeFile{path: p, data: randomBytes(seed, n), lfs: true}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.repos["test/vlm-GGUF"] = &fakeRepo{commit: commitID("vlm"), files: []*fakeFile{
		{path: "README.md", data: []byte("# vlm\n")},
		model("mmproj-BF16.gguf", 9<<10),
		model("mmproj-F16.gguf", 10<<10),
		model("mmproj-F32.gguf", 11<<10),
		model("mmproj-Q8_0.gguf", 12<<10),
		model("vlm-BF16.gguf", 20<<10),
		model("vlm-F16.gguf", 21<<10),
		model("vlm-Q4_K_M.gguf", 22<<10),
		model("vlm-Q8_0.gguf", 23<<10),
	}}
	h.repos["test/nested-GGUF"] = &fakeRepo{commit: commitID("nested"), files: []*fakeFile{
		model("F16/mmproj-F16.gguf", 4<<10), // not beside the Q4_K_M model: never chosen for it
		model("Q4_K_M/m-Q4_K_M.gguf", 5<<10),
		model("Q4_K_M/mmproj-m-F16.gguf", 6<<10),
		model("mmproj-Q4_K_M.gguf", 7<<10), // above the model, so farther than Q4_K_M/'s
		model("only-root/m-Q8_0.gguf", 8<<10),
	}}
}

func TestPickProjector(t *testing.T) {
	t.Parallel()
	list := func(paths ...string) []File {
		var fs []File
		for _, p := range paths {
			fs = append(fs, File{Path: p})
		}
		return fs
	}
	for _, c := range []struct {
		name  string
		files []File
		model string
		quant string
		want  string // "": none
	}{
		{"quant tag matches", list("mmproj-F16.gguf", "mmproj-Q4_K_M.gguf", "m-Q4_K_M.gguf"), "m-Q4_K_M.gguf", "q4_k_m", "mmproj-Q4_K_M.gguf"},
		{"tag beats an earlier projector of equal bits", list("mmproj-BF16.gguf", "mmproj-F16.gguf", "m-F16.gguf"), "m-F16.gguf", "F16", "mmproj-F16.gguf"},
		{"equal bits without a tag: the first listed", list("mmproj-BF16.gguf", "mmproj-F16.gguf", "m-F16.gguf"), "m-F16.gguf", "", "mmproj-BF16.gguf"},
		{"F16 alone, any name case", list("MMProj-Model-f16.gguf", "m-Q4_K_M.gguf"), "m-Q4_K_M.gguf", "", "MMProj-Model-f16.gguf"},
		{"nearest bits: Q8_0 before F16 for Q4_K_M", list("mmproj-F16.gguf", "mmproj-F32.gguf", "mmproj-Q8_0.gguf"), "m-Q4_K_M.gguf", "", "mmproj-Q8_0.gguf"},
		{"nearest bits: F16 before F32 for F16", list("mmproj-F32.gguf", "mmproj-F16.gguf"), "m-F16.gguf", "", "mmproj-F16.gguf"},
		{"nearest bits: F32 for F32", list("mmproj-F16.gguf", "mmproj-F32.gguf"), "m-F32.gguf", "", "mmproj-F32.gguf"},
		{"untagged model and projector", list("mmproj-model-f16.gguf", "mmproj.gguf"), "model.gguf", "", "mmproj.gguf"},
		{"nearest directory first", list("mmproj-Q4_K_M.gguf", "a/mmproj-F32.gguf", "b/mmproj-Q4_K_M.gguf"), "a/m-Q4_K_M.gguf", "Q4_K_M", "a/mmproj-F32.gguf"},
		{"a directory above counts", list("mmproj-F16.gguf", "b/mmproj-F16.gguf"), "a/c/m-Q4_K_M.gguf", "", "mmproj-F16.gguf"},
		{"another directory does not", list("b/mmproj-F16.gguf"), "a/m-Q4_K_M.gguf", "", ""},
		{"only GGUF files", list("mmproj-F16.bin", "mmproj/README.md", "m-Q4_K_M.gguf"), "m-Q4_K_M.gguf", "", ""},
		{"the name, not the directory", list("mmproj/m-F16.gguf"), "mmproj/m-Q4_K_M.gguf", "", ""},
		{"none", list("m-Q4_K_M.gguf", "m-Q8_0.gguf", "imatrix.gguf"), "m-Q4_K_M.gguf", "", ""},
	} {
		got, ok := pickProjector(c.files, File{Path: c.model}, c.quant)
		assert.Equal(t, c.want != "", ok, c.name)
		assert.Equal(t, c.want, got.Path, c.name)
	}
}

func TestResolveProjector(t *testing.T) {
	t.Parallel()
	h := newFakeHub(t)
	addVLMRepos(h)
	c := newClient(t, h)
	for _, tc := range []struct{ ref, file, want string }{
		{"test/tiny-GGUF", "", "mmproj-tiny-Q4_K_M.gguf"},
		{"test/tiny-GGUF:Q8_0", "", "mmproj-tiny-Q4_K_M.gguf"}, // the only one
		{"test/noquant-GGUF", "", "mmproj-model-f16.gguf"},
		{"test/vlm-GGUF", "", "mmproj-Q8_0.gguf"},      // Q4_K_M model: the nearest bits, as llama.cpp
		{"test/vlm-GGUF:Q8_0", "", "mmproj-Q8_0.gguf"}, // tag and bits
		{"test/vlm-GGUF:f16", "", "mmproj-F16.gguf"},   // the tag, before BF16 listed first
		{"test/vlm-GGUF:BF16", "", "mmproj-BF16.gguf"},
		{"test/vlm-GGUF:BF16", "vlm-F16.gguf", "mmproj-BF16.gguf"}, // -hff: the quant is ignored, BF16 and F16 tie, the first wins
		{"test/nested-GGUF", "", "Q4_K_M/mmproj-m-F16.gguf"},
		{"test/nested-GGUF:Q8_0", "", "mmproj-Q4_K_M.gguf"}, // only-root/ has none: the root's
	} {
		f, err := c.ResolveProjector(t.Context(), tc.ref, tc.file)
		require.NoError(t, err, tc.ref)
		assert.Equal(t, tc.want, f.Path, "%s %s", tc.ref, tc.file)
	}

	f, err := c.ResolveProjector(t.Context(), "test/vlm-GGUF:F16", "")
	require.NoError(t, err)
	want := h.file("test/vlm-GGUF", "mmproj-F16.gguf")
	commit := commitID("vlm")
	assert.Equal(t, File{
		Repo: "test/vlm-GGUF", Commit: commit, Path: "mmproj-F16.gguf", Size: int64(len(want.data)),
		SHA256: want.sha256(), OID: want.sha256(),
		URL:       h.srv.URL + "/test/vlm-GGUF/resolve/" + commit + "/mmproj-F16.gguf",
		CachePath: filepath.Join(c.CacheDir, "models--test--vlm-GGUF", "snapshots", commit, "mmproj-F16.gguf"),
	}, f)
	assert.Empty(t, filesUnder(t, c.CacheDir), "ResolveProjector writes nothing")

	_, err = c.ResolveProjector(t.Context(), "test/split-GGUF", "")
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrNoProjector)
	assert.NotErrorIs(t, err, ErrNotCached)
	assert.Contains(t, err.Error(), "test/split-GGUF has no multimodal projector for Q4_K_M/big-Q4_K_M-00001-of-00003.gguf")

	_, err = c.ResolveProjector(t.Context(), "test/vlm-GGUF:Q2_K", "")
	assert.ErrorIs(t, err, ErrNotFound, "the model must be found first")
	assert.NotErrorIs(t, err, ErrNoProjector)
	_, err = c.ResolveProjector(t.Context(), "test/missing-GGUF", "")
	assert.ErrorIs(t, err, ErrNotFound)

	before := len(h.requests("", ""))
	_, err = c.DownloadProjector(t.Context(), "test/vlm-GGUF", "../x.gguf")
	assert.ErrorIs(t, err, ErrInvalidRef)
	_, err = c.DownloadProjector(t.Context(), "vlm-GGUF", "")
	assert.ErrorIs(t, err, ErrInvalidRef)
	assert.Len(t, h.requests("", ""), before, "bad references make no request")
}

func TestDownloadProjector(t *testing.T) {
	t.Parallel()
	h := newFakeHub(t)
	addVLMRepos(h)
	c := newClient(t, h)
	var log progressLog
	c.Progress = log.add
	want := h.file("test/vlm-GGUF", "mmproj-Q8_0.gguf")
	commit := commitID("vlm")

	model, err := c.Download(t.Context(), "test/vlm-GGUF")
	require.NoError(t, err)
	path, err := c.DownloadProjector(t.Context(), "test/vlm-GGUF", "")
	require.NoError(t, err)
	repoDir := filepath.Join(c.CacheDir, "models--test--vlm-GGUF")
	assert.Equal(t, filepath.Join(repoDir, "snapshots", commit, "mmproj-Q8_0.gguf"), path)
	assert.Equal(t, filepath.Dir(model), filepath.Dir(path), "in the model's snapshot")
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, want.data, got)
	target, err := os.Readlink(path)
	require.NoError(t, err)
	assert.Equal(t, filepath.Join("..", "..", "blobs", want.sha256()), target, "llama.cpp's layout, as a model file")
	assert.Len(t, filesUnder(t, repoDir), 5, "two blobs, two links, refs/main: nothing partial left")
	last := log.ps[len(log.ps)-1]
	assert.Equal(t, Progress{Name: "mmproj-Q8_0.gguf", Downloaded: int64(len(want.data)), Total: int64(len(want.data)), Done: true}, last)
	assert.Len(t, h.requests("GET", "/resolve/"), 2, "the model and its projector")

	// cached: not fetched again, online or offline
	log.ps = nil
	again, err := c.DownloadProjector(t.Context(), "test/vlm-GGUF:q4_k_m", "")
	require.NoError(t, err)
	assert.Equal(t, path, again)
	assert.Equal(t, []Progress{{Name: "mmproj-Q8_0.gguf", Downloaded: int64(len(want.data)), Total: int64(len(want.data)), Cached: true, Done: true}}, log.ps)
	online := len(h.requests("", ""))
	c.Offline = true
	again, err = c.DownloadProjector(t.Context(), "test/vlm-GGUF", "")
	require.NoError(t, err)
	assert.Equal(t, path, again)
	f, err := c.ResolveProjector(t.Context(), "test/vlm-GGUF", "")
	require.NoError(t, err)
	assert.Equal(t, want.sha256(), f.SHA256, "the digest comes from the blob's name")

	// offline, a projector never fetched is ErrNoProjector, and ErrNotCached
	_, err = c.DownloadProjector(t.Context(), "test/vlm-GGUF", "vlm-Q8_0.gguf")
	assert.ErrorIs(t, err, ErrNotCached, "the model is not cached either")
	assert.NotErrorIs(t, err, ErrNoProjector)
	_, err = c.Download(t.Context(), "test/noquant-GGUF")
	assert.ErrorIs(t, err, ErrNotCached)
	assert.Len(t, h.requests("", ""), online, "offline makes no request")

	c.Offline = false
	_, err = c.Download(t.Context(), "test/tiny-GGUF")
	require.NoError(t, err)
	c.Offline = true
	_, err = c.DownloadProjector(t.Context(), "test/tiny-GGUF", "")
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrNoProjector)
	assert.ErrorIs(t, err, ErrNotCached)
	assert.Contains(t, err.Error(), "offline: no multimodal projector of test/tiny-GGUF in the cache")

	// no projector: nothing is fetched
	c.Offline = false
	before := len(h.requests("GET", "/resolve/"))
	_, err = c.DownloadProjector(t.Context(), "test/split-GGUF:Q8_0", "")
	assert.ErrorIs(t, err, ErrNoProjector)
	assert.Len(t, h.requests("GET", "/resolve/"), before)
	assert.NoDirExists(t, filepath.Join(c.CacheDir, "models--test--split-GGUF"))
}

func TestDownloadProjectorByModelFile(t *testing.T) {
	t.Parallel()
	h := newFakeHub(t)
	addVLMRepos(h)
	c := newClient(t, h)
	path, err := c.DownloadProjector(t.Context(), "test/nested-GGUF", "Q4_K_M/m-Q4_K_M.gguf")
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(c.CacheDir, "models--test--nested-GGUF", "snapshots", commitID("nested"), "Q4_K_M", "mmproj-m-F16.gguf"), path)
	assert.FileExists(t, path)
	_, err = c.DownloadProjector(t.Context(), "test/nested-GGUF", "nope.gguf")
	assert.ErrorIs(t, err, ErrNotFound)
}

func TestDownloadProjectorUnreachableHub(t *testing.T) {
	t.Parallel()
	h := newFakeHub(t)
	addVLMRepos(h)
	c := newClient(t, h)
	_, err := c.Download(t.Context(), "test/tiny-GGUF")
	require.NoError(t, err)
	_, err = c.Download(t.Context(), "test/vlm-GGUF")
	require.NoError(t, err)
	proj, err := c.DownloadProjector(t.Context(), "test/vlm-GGUF", "")
	require.NoError(t, err)
	h.srv.Close()

	got, err := c.DownloadProjector(t.Context(), "test/vlm-GGUF", "")
	require.NoError(t, err, "the cache serves when the hub does not answer")
	assert.Equal(t, proj, got)

	_, err = c.DownloadProjector(t.Context(), "test/tiny-GGUF", "")
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrNoProjector, "the model is cached: go on without a projector")
	assert.ErrorIs(t, err, ErrNotCached)
	assert.Contains(t, err.Error(), "no multimodal projector of test/tiny-GGUF in the cache")
	assert.Contains(t, err.Error(), "cannot reach the hub")

	_, err = c.DownloadProjector(t.Context(), "test/split-GGUF", "")
	require.Error(t, err)
	assert.NotErrorIs(t, err, ErrNoProjector, "nothing cached: the hub's error")
	assert.Contains(t, err.Error(), "cannot reach the hub")
}
