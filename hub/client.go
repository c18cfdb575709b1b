package hub

import (
	"net/http"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// DefaultEndpoint is the hub llama.cpp talks to when no endpoint is configured.
const DefaultEndpoint = "https://huggingface.co/"

// Client downloads models. Its methods may be called from several goroutines; don't
// change its fields while they run. The zero value works: empty fields take the
// defaults described on each, but only NewClient reads HF_TOKEN and the offline
// variables.
type Client struct {
	// Endpoint is the hub's base URL. Empty: DefaultEndpoint.
	Endpoint string
	// Token is sent as "Authorization: Bearer <Token>" to the endpoint's host (never
	// elsewhere, never logged). Empty: no authentication.
	Token string
	// CacheDir holds the hub-layout cache (models--user--repo/...). Empty: the
	// directory llama.cpp uses, from the environment (see the package doc).
	CacheDir string
	// FileCacheDir holds files fetched by DownloadURL. Empty: llama.cpp's cache
	// directory, from the environment (see the package doc).
	FileCacheDir string
	// Offline uses cached files only and makes no network request.
	Offline bool
	// Retries is how many more times a transfer is tried after a network failure or a
	// 5xx/429 response, each continuing the partial file after a growing pause (2 s,
	// 4 s, ...). 0 means 2 (llama.cpp's 3 attempts); negative means none.
	Retries int
	// HTTPClient makes the requests. Nil: http.DefaultClient. Keep its Timeout at zero
	// (or long): it bounds whole downloads. Cancel through the context instead.
	HTTPClient *http.Client
	// Progress, when set, is called from the downloading goroutine at the start of each
	// file, at most every 100 ms while bytes arrive, and when the file is complete.
	Progress func(Progress)

	retryDelay time.Duration // first pause between attempts; 0: 2 s (tests shorten it)
}

// Progress reports one file's download.
type Progress struct {
	Name       string // path in the repository, or the file name of a URL download
	Downloaded int64  // bytes on disk so far, including a resumed partial file
	Total      int64  // expected size; 0 when unknown
	Cached     bool   // the file was already in the cache: nothing was transferred
	Done       bool   // the file is complete (the last report for it)
}

// NewClient returns a Client configured from the environment as llama.cpp's tools are:
//
//   - Endpoint: $MODEL_ENDPOINT, else $HF_ENDPOINT, else DefaultEndpoint
//     (common.cpp common_get_model_endpoint)
//   - Token: $HF_TOKEN (arg.cpp --hf-token)
//   - CacheDir: $LLAMA_CACHE, $HF_HUB_CACHE, $HUGGINGFACE_HUB_CACHE, $HF_HOME/hub,
//     $XDG_CACHE_HOME/huggingface/hub, ~/.cache/huggingface/hub, first set wins
//     (hf-cache.cpp get_cache_directory)
//   - FileCacheDir: $LLAMA_CACHE, else the platform cache directory + "llama.cpp"
//     (common.cpp fs_get_cache_directory)
//   - Offline: $LLAMA_ARG_OFFLINE (arg.cpp --offline) or $LLAMA_OFFLINE set to
//     1/true/on/enabled, or huggingface_hub's $HF_HUB_OFFLINE set to 1/true/on/yes
func NewClient() *Client {
	return &Client{
		Endpoint:     endpointFromEnv(),
		Token:        os.Getenv("HF_TOKEN"),
		CacheDir:     defaultCacheDir(),
		FileCacheDir: defaultFileCacheDir(),
		Offline:      offlineFromEnv(),
	}
}

func endpointFromEnv() string {
	for _, v := range []string{"MODEL_ENDPOINT", "HF_ENDPOINT"} {
		if s := os.Getenv(v); s != "" {
			return withSlash(s)
		}
	}
	return DefaultEndpoint
}

func offlineFromEnv() bool {
	llamaTruthy := func(s string) bool { return s == "1" || s == "true" || s == "on" || s == "enabled" }
	switch strings.ToLower(os.Getenv("HF_HUB_OFFLINE")) {
	case "1", "true", "on", "yes":
		return true
	}
	return llamaTruthy(os.Getenv("LLAMA_ARG_OFFLINE")) || llamaTruthy(os.Getenv("LLAMA_OFFLINE"))
}

// homeDir is $HOME ($USERPROFILE on Windows), else the account's home directory.
func homeDir() string {
	v := "HOME"
	if runtime.GOOS == "windows" {
		v = "USERPROFILE"
	}
	if h := os.Getenv(v); h != "" {
		return h
	}
	if u, err := user.Current(); err == nil {
		return u.HomeDir
	}
	return ""
}

// defaultCacheDir is hf-cache.cpp's get_cache_directory; "" when undeterminable.
func defaultCacheDir() string {
	for _, e := range []struct{ env, sub string }{
		{"LLAMA_CACHE", ""},
		{"HF_HUB_CACHE", ""},
		{"HUGGINGFACE_HUB_CACHE", ""},
		{"HF_HOME", "hub"},
		{"XDG_CACHE_HOME", filepath.Join("huggingface", "hub")},
	} {
		if p := os.Getenv(e.env); p != "" {
			return filepath.Join(p, e.sub)
		}
	}
	if h := homeDir(); h != "" {
		return filepath.Join(h, ".cache", "huggingface", "hub")
	}
	return ""
}

// defaultFileCacheDir is common.cpp's fs_get_cache_directory; "" when undeterminable.
func defaultFileCacheDir() string {
	if p := os.Getenv("LLAMA_CACHE"); p != "" {
		return filepath.Clean(p)
	}
	var base string
	switch runtime.GOOS {
	case "windows":
		base = os.Getenv("LOCALAPPDATA")
	case "darwin", "ios":
		if h := os.Getenv("HOME"); h != "" {
			base = filepath.Join(h, "Library", "Caches")
		}
	default:
		if x := os.Getenv("XDG_CACHE_HOME"); x != "" {
			base = x
		} else if h := homeDir(); h != "" {
			base = filepath.Join(h, ".cache")
		}
	}
	if base == "" {
		return ""
	}
	return filepath.Join(base, "llama.cpp")
}

func withSlash(s string) string {
	if !strings.HasSuffix(s, "/") {
		s += "/"
	}
	return s
}

func (c *Client) endpoint() string {
	if c.Endpoint == "" {
		return DefaultEndpoint
	}
	return withSlash(c.Endpoint)
}

func (c *Client) httpClient() *http.Client {
	if c.HTTPClient != nil {
		return c.HTTPClient
	}
	return http.DefaultClient
}

func (c *Client) cacheDir() (string, error) {
	d := c.CacheDir
	if d == "" {
		d = defaultCacheDir()
	}
	if d == "" {
		return "", newError(nil, nil, "cannot determine the cache directory: set LLAMA_CACHE or Client.CacheDir")
	}
	return d, nil
}

func (c *Client) fileCacheDir() (string, error) {
	d := c.FileCacheDir
	if d == "" {
		d = defaultFileCacheDir()
	}
	if d == "" {
		return "", newError(nil, nil, "cannot determine the cache directory: set LLAMA_CACHE or Client.FileCacheDir")
	}
	return d, nil
}

func (c *Client) attempts() int {
	switch {
	case c.Retries < 0:
		return 1
	case c.Retries == 0:
		return 3
	}
	return c.Retries + 1
}

// sendsTokenTo reports whether the token goes with a request to u: only to the
// endpoint's scheme and host, so a -mu URL elsewhere never sees it.
func (c *Client) sendsTokenTo(u *url.URL) bool {
	if c.Token == "" {
		return false
	}
	ep, err := url.Parse(c.endpoint())
	return err == nil && strings.EqualFold(ep.Scheme, u.Scheme) && strings.EqualFold(ep.Host, u.Host)
}

// maskURL drops credentials, the query string and the fragment, which may hold
// secrets (signed URLs), before a URL goes into an error message.
func maskURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		if i := strings.IndexAny(raw, "?#"); i >= 0 {
			return raw[:i]
		}
		return raw
	}
	u.User, u.RawQuery, u.Fragment, u.RawFragment = nil, "", "", ""
	return u.String()
}
