// Package hubtest is a Hugging Face hub for the examples' tests of -hf: it serves the
// calls llama.cpp and package hub make (refs, a recursive tree listing with LFS sha256
// and sizes, resolve with Range), plain files by URL for -mu and -mmu, and records the
// files fetched.
package hubtest

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Commit is the commit every repository's main branch points at.
const Commit = "0123456789abcdef0123456789abcdef01234567"

// Hub is a running fake hub; its methods may be called from several goroutines.
type Hub struct {
	URL string // the endpoint, for MODEL_ENDPOINT

	mu        sync.Mutex
	repos     map[string][]file
	plain     map[string][]byte
	downloads []string
}

type file struct {
	path string
	data []byte
}

// New starts a hub with no repositories; it stops when the test ends.
func New(t testing.TB) *Hub {
	h := &Hub{repos: map[string][]file{}, plain: map[string][]byte{}}
	srv := httptest.NewServer(http.HandlerFunc(h.serve))
	t.Cleanup(srv.Close)
	h.URL = srv.URL + "/"
	return h
}

// Add puts data into repository repo ("user/name", made on first use) at path; files are
// listed in the order added.
func (h *Hub) Add(repo, path string, data []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.repos[repo] = append(h.repos[repo], file{path, data})
}

// AddFile is Add with the content of the file src.
func (h *Hub) AddFile(t testing.TB, repo, path, src string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	h.Add(repo, path, b)
}

// AddURL serves data at h.URL + "files/" + name, and returns that URL.
func (h *Hub) AddURL(name string, data []byte) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.plain[name] = data
	return h.URL + "files/" + name
}

// Downloads lists the files fetched so far, in order: "user/name/path" for repository
// files, "files/name" for the others.
func (h *Hub) Downloads() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.downloads...)
}

// Env is the environment that points package hub (hub.NewClient) and llama.cpp's tools
// at h, with cacheDir as the cache: no token, not offline.
func (h *Hub) Env(cacheDir string) []string {
	return []string{"MODEL_ENDPOINT=" + h.URL, "HF_ENDPOINT=" + h.URL, "LLAMA_CACHE=" + cacheDir, "HF_TOKEN=",
		"LLAMA_ARG_OFFLINE=", "LLAMA_OFFLINE=", "HF_HUB_OFFLINE="}
}

// Setenv sets Env(cacheDir) for the rest of t (which then may not be parallel), for
// code in the test's process and the programs it starts.
func (h *Hub) Setenv(t *testing.T, cacheDir string) {
	for _, kv := range h.Env(cacheDir) {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func (h *Hub) serve(w http.ResponseWriter, r *http.Request) {
	p := strings.TrimPrefix(r.URL.Path, "/")
	if name, ok := strings.CutPrefix(p, "files/"); ok {
		h.mu.Lock()
		data, found := h.plain[name]
		h.mu.Unlock()
		if !found {
			http.NotFound(w, r)
			return
		}
		h.send(w, r, "files/"+name, data)
		return
	}
	api := strings.HasPrefix(p, "api/models/")
	seg := strings.SplitN(strings.TrimPrefix(p, "api/models/"), "/", 5)
	if len(seg) < 3 {
		http.NotFound(w, r)
		return
	}
	repo := seg[0] + "/" + seg[1]
	h.mu.Lock()
	files, found := h.repos[repo]
	h.mu.Unlock()
	if !found {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "Repository not found"})
		return
	}
	switch {
	case api && seg[2] == "refs" && len(seg) == 3:
		writeJSON(w, http.StatusOK, map[string]any{"branches": []map[string]string{{"name": "main", "ref": "refs/heads/main", "targetCommit": Commit}}})
	case api && seg[2] == "tree" && len(seg) == 4 && seg[3] == Commit:
		var entries []map[string]any
		for _, f := range files {
			sum := sha256.Sum256(f.data)
			g := sha1.New()
			g.Write([]byte("blob " + strconv.Itoa(len(f.data)) + "\x00"))
			g.Write(f.data)
			entries = append(entries, map[string]any{"type": "file", "path": f.path, "size": len(f.data), "oid": hex.EncodeToString(g.Sum(nil)),
				"lfs": map[string]any{"oid": hex.EncodeToString(sum[:]), "size": len(f.data), "pointerSize": 134}})
		}
		writeJSON(w, http.StatusOK, entries)
	case !api && len(seg) == 5 && seg[2] == "resolve" && (seg[3] == Commit || seg[3] == "main"):
		for _, f := range files {
			if f.path == seg[4] {
				h.send(w, r, repo+"/"+f.path, f.data)
				return
			}
		}
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "Entry not found"})
	default:
		http.NotFound(w, r)
	}
}

// send serves data, honouring Range, and records a GET.
func (h *Hub) send(w http.ResponseWriter, r *http.Request, name string, data []byte) {
	if r.Method == http.MethodGet {
		h.mu.Lock()
		h.downloads = append(h.downloads, name)
		h.mu.Unlock()
	}
	sum := sha256.Sum256(data)
	w.Header().Set("ETag", `"`+hex.EncodeToString(sum[:])+`"`)
	http.ServeContent(w, r, path.Base(name), time.Time{}, bytes.NewReader(data))
}
