package hub

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// fakeHub speaks the part of the Hugging Face hub API that llama.cpp (and this
// package) uses: /api/models/<repo>/refs, /api/models/<repo>/tree/<rev>?recursive=true
// (with LFS sha256 and sizes, optionally paged by Link headers) and
// /<repo>/resolve/<rev>/<path> honouring Range. /files/<name> serves plain files for
// DownloadURL. It records every request and can misbehave on demand.
type fakeHub struct {
	srv   *httptest.Server
	token string // required by private repositories

	mu          sync.Mutex
	repos       map[string]*fakeRepo
	plain       map[string]*fakeFile // /files/<name>
	pageSize    int                  // tree entries per page; 0: one page
	reqs        []fakeReq
	sent        map[string]int64 // body bytes sent per file key
	cutAfter    map[string]int64 // once: drop the connection after N body bytes
	stallAfter  map[string]int64 // once: send N body bytes, then wait for the client to leave
	stalled     chan struct{}    // closed when a stall begins
	corrupt     map[string]bool  // flip a byte in the body
	ignoreRange bool             // answer Range requests with 200 and the whole file
}

type fakeRepo struct {
	commit  string
	private bool
	files   []*fakeFile
}

type fakeFile struct {
	path       string
	data       []byte
	lfs        bool
	etag       string // plain files
	reprDigest string // plain files: Repr-Digest header value
}

type fakeReq struct {
	Method, Path, Range, Auth string
}

func (f *fakeFile) sha256() string {
	s := sha256.Sum256(f.data)
	return hex.EncodeToString(s[:])
}

func (f *fakeFile) gitOID() string {
	h := sha1.New()
	fmt.Fprintf(h, "blob %d\x00", len(f.data))
	h.Write(f.data)
	return hex.EncodeToString(h.Sum(nil))
}

// randomBytes returns n deterministic pseudo-random bytes.
func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 42))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func commitID(name string) string {
	s := sha1.Sum([]byte(name))
	return hex.EncodeToString(s[:])
}

const modelSize = 300 << 10

// newFakeHub starts a hub holding the standard test repositories.
func newFakeHub(t *testing.T) *fakeHub {
	h := &fakeHub{
		token:      "hf_" + strings.Repeat("a1B2", 9),
		repos:      map[string]*fakeRepo{},
		plain:      map[string]*fakeFile{},
		sent:       map[string]int64{},
		cutAfter:   map[string]int64{},
		stallAfter: map[string]int64{},
		corrupt:    map[string]bool{},
	}
	seed := uint64(0)
	model := func(p string, n int) *fakeFile {
		seed++
		return &fakeFile{path: p, data: randomBytes(seed, n), lfs: true}
	}
	text := func(p, s string) *fakeFile { return &fakeFile{path: p, data: []byte(s)} }
	h.repos["test/tiny-GGUF"] = &fakeRepo{commit: commitID("tiny"), files: []*fakeFile{
		text(".gitattributes", "*.gguf filter=lfs diff=lfs merge=lfs -text\n"),
		text("README.md", "# tiny\n"),
		model("mmproj-tiny-Q4_K_M.gguf", 20<<10), // listed first and tagged Q4_K_M: must never be the model
		model("tiny-F16.gguf", 40<<10),
		model("tiny-Q4_K_M.gguf", modelSize),
		model("tiny-Q4_K_S.gguf", 30<<10),
		model("tiny-Q8_0.gguf", 50<<10),
	}}
	h.repos["test/split-GGUF"] = &fakeRepo{commit: commitID("split"), files: []*fakeFile{
		model("Q4_K_M/big-Q4_K_M-00002-of-00003.gguf", 60<<10), // out of order on purpose
		model("Q4_K_M/big-Q4_K_M-00001-of-00003.gguf", 70<<10),
		model("Q4_K_M/big-Q4_K_M-00003-of-00003.gguf", 10<<10),
		model("big-Q8_0.gguf", 20<<10),
	}}
	h.repos["test/broken-split-GGUF"] = &fakeRepo{commit: commitID("broken"), files: []*fakeFile{
		model("big-Q4_K_M-00001-of-00003.gguf", 1<<10),
		model("big-Q4_K_M-00003-of-00003.gguf", 1<<10),
	}}
	h.repos["test/noquant-GGUF"] = &fakeRepo{commit: commitID("noquant"), files: []*fakeFile{
		model("mmproj-model-f16.gguf", 8<<10),
		text("notes.txt", "no quant tags here\n"),
		model("model.gguf", 16<<10),
	}}
	h.repos["test/unsafe-GGUF"] = &fakeRepo{commit: commitID("unsafe"), files: []*fakeFile{
		model("../evil-Q4_K_M.gguf", 1<<10),
		model("/abs-Q4_K_M.gguf", 1<<10),
		model("good-Q8_0.gguf", 2<<10),
	}}
	h.repos["test/private-GGUF"] = &fakeRepo{commit: commitID("private"), private: true, files: []*fakeFile{
		model("p-Q4_K_M.gguf", 12<<10),
	}}
	h.srv = httptest.NewServer(h)
	t.Cleanup(h.srv.Close)
	return h
}

// file returns a repository's file by path.
func (h *fakeHub) file(repo, p string) *fakeFile {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, f := range h.repos[repo].files {
		if f.path == p {
			return f
		}
	}
	panic("no file " + p)
}

// requests returns the recorded requests whose path contains sub.
func (h *fakeHub) requests(method, sub string) []fakeReq {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []fakeReq
	for _, r := range h.reqs {
		if (method == "" || r.Method == method) && strings.Contains(r.Path, sub) {
			out = append(out, r)
		}
	}
	return out
}

func (h *fakeHub) bytesSent(key string) int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.sent[key]
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func (h *fakeHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	h.reqs = append(h.reqs, fakeReq{r.Method, r.URL.Path, r.Header.Get("Range"), r.Header.Get("Authorization")})
	h.mu.Unlock()

	p := r.URL.Path
	if rest, ok := strings.CutPrefix(p, "/api/models/"); ok {
		h.api(w, r, rest)
		return
	}
	if name, ok := strings.CutPrefix(p, "/files/"); ok {
		h.mu.Lock()
		f := h.plain[name]
		h.mu.Unlock()
		if f == nil {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("ETag", f.etag)
		if f.reprDigest != "" {
			w.Header().Set("Repr-Digest", f.reprDigest)
		}
		h.serveBytes(w, r, name, f.data)
		return
	}
	// /<user>/<repo>/resolve/<rev>/<path...>
	seg := strings.SplitN(strings.TrimPrefix(p, "/"), "/", 5)
	if len(seg) != 5 || seg[2] != "resolve" {
		http.NotFound(w, r)
		return
	}
	repo, ok := h.authorize(w, r, seg[0]+"/"+seg[1])
	if !ok {
		return
	}
	if seg[3] != repo.commit && seg[3] != "main" {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "Invalid rev id"})
		return
	}
	for _, f := range repo.files {
		if f.path == seg[4] {
			w.Header().Set("ETag", `"`+f.sha256()+`"`)
			if f.lfs {
				w.Header().Set("X-Linked-Size", strconv.Itoa(len(f.data)))
			}
			h.serveBytes(w, r, f.path, f.data)
			return
		}
	}
	writeJSON(w, http.StatusNotFound, map[string]string{"error": "Entry not found"})
}

// authorize finds the repository and checks the token of a private one.
func (h *fakeHub) authorize(w http.ResponseWriter, r *http.Request, name string) (*fakeRepo, bool) {
	h.mu.Lock()
	repo := h.repos[name]
	h.mu.Unlock()
	if repo == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "Repository not found"})
		return nil, false
	}
	if repo.private && r.Header.Get("Authorization") != "Bearer "+h.token {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "Invalid credentials in Authorization header"})
		return nil, false
	}
	return repo, true
}

func (h *fakeHub) api(w http.ResponseWriter, r *http.Request, rest string) {
	seg := strings.SplitN(rest, "/", 4) // user, repo, refs|tree, rev
	if len(seg) < 3 {
		http.NotFound(w, r)
		return
	}
	repo, ok := h.authorize(w, r, seg[0]+"/"+seg[1])
	if !ok {
		return
	}
	switch {
	case seg[2] == "refs" && len(seg) == 3:
		writeJSON(w, http.StatusOK, map[string]any{
			"branches": []map[string]string{
				{"name": "../escape", "ref": "refs/heads/x", "targetCommit": commitID("escape")}, // skipped
				{"name": "dev", "ref": "refs/heads/dev", "targetCommit": commitID("dev")},
				{"name": "main", "ref": "refs/heads/main", "targetCommit": repo.commit},
			},
			"converts": []any{}, "tags": []any{},
		})
	case seg[2] == "tree" && len(seg) == 4:
		if seg[3] != repo.commit || r.URL.Query().Get("recursive") != "true" {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "Invalid rev id or not recursive"})
			return
		}
		var entries []map[string]any
		dirs := map[string]bool{}
		for _, f := range repo.files {
			if d := path.Dir(f.path); d != "." && !dirs[d] && !strings.Contains(d, "..") {
				dirs[d] = true
				entries = append(entries, map[string]any{"type": "directory", "oid": commitID(d), "size": 0, "path": d})
			}
			e := map[string]any{"type": "file", "oid": f.gitOID(), "size": len(f.data), "path": f.path}
			if f.lfs {
				e["lfs"] = map[string]any{"oid": f.sha256(), "size": len(f.data), "pointerSize": 134}
			}
			entries = append(entries, e)
		}
		h.mu.Lock()
		size := h.pageSize
		h.mu.Unlock()
		if size > 0 {
			start, _ := strconv.Atoi(r.URL.Query().Get("cursor"))
			end := min(start+size, len(entries))
			if end < len(entries) {
				w.Header().Set("Link", fmt.Sprintf(`<%s?recursive=true&cursor=%d>; rel="next"`, r.URL.Path, end))
			}
			entries = entries[start:end]
		}
		writeJSON(w, http.StatusOK, entries)
	default:
		http.NotFound(w, r)
	}
}

// serveBytes answers GET/HEAD for data, honouring "Range: bytes=N-" unless told not to,
// and applying the one-shot cut/stall and the corruption set for key.
func (h *fakeHub) serveBytes(w http.ResponseWriter, r *http.Request, key string, data []byte) {
	h.mu.Lock()
	ignoreRange, corrupt := h.ignoreRange, h.corrupt[key]
	cut, hasCut := h.cutAfter[key]
	stall, hasStall := h.stallAfter[key]
	if r.Method == http.MethodGet {
		delete(h.cutAfter, key)
		delete(h.stallAfter, key)
	}
	h.mu.Unlock()

	if corrupt {
		data = append([]byte(nil), data...)
		data[len(data)/2] ^= 0xff
	}
	w.Header().Set("Accept-Ranges", "bytes")
	start := 0
	status := http.StatusOK
	if rg := r.Header.Get("Range"); rg != "" && !ignoreRange {
		n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(rg, "bytes="), "-"))
		if err != nil || n >= len(data) {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", len(data)))
			w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
			return
		}
		start, status = n, http.StatusPartialContent
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", n, len(data)-1, len(data)))
	}
	body := data[start:]
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return
	}
	count := func(n int) {
		h.mu.Lock()
		h.sent[key] += int64(n)
		h.mu.Unlock()
	}
	switch {
	case hasCut && cut < int64(len(body)):
		n, _ := w.Write(body[:cut])
		count(n)
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // drop the connection mid-body
	case hasStall && stall < int64(len(body)):
		n, _ := w.Write(body[:stall])
		count(n)
		w.(http.Flusher).Flush()
		if h.stalled != nil {
			close(h.stalled)
		}
		<-r.Context().Done()
		return
	}
	for len(body) > 0 { // in chunks, so progress can be seen
		n, err := w.Write(body[:min(len(body), 32<<10)])
		count(n)
		if err != nil {
			return
		}
		body = body[n:]
	}
}
