package hub

import (
	"net/url"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var envVars = []string{
	"LLAMA_CACHE", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME",
	"MODEL_ENDPOINT", "HF_ENDPOINT", "HF_TOKEN", "LLAMA_ARG_OFFLINE", "LLAMA_OFFLINE", "HF_HUB_OFFLINE",
}

func clearEnv(t *testing.T) {
	for _, v := range envVars {
		t.Setenv(v, "")
	}
	t.Setenv("HOME", "/home/u")
}

func TestNewClientCacheDir(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("paths below are Linux's")
	}
	// Each case sets one more variable of higher priority (hf-cache.cpp get_cache_directory).
	steps := []struct{ env, val, hub, file string }{
		{"", "", "/home/u/.cache/huggingface/hub", "/home/u/.cache/llama.cpp"},
		{"XDG_CACHE_HOME", "/xdg", "/xdg/huggingface/hub", "/xdg/llama.cpp"},
		{"HF_HOME", "/hfhome", "/hfhome/hub", "/xdg/llama.cpp"},
		{"HUGGINGFACE_HUB_CACHE", "/old", "/old", "/xdg/llama.cpp"},
		{"HF_HUB_CACHE", "/hubcache", "/hubcache", "/xdg/llama.cpp"},
		{"LLAMA_CACHE", "/llama", "/llama", "/llama"},
	}
	clearEnv(t)
	for _, s := range steps {
		if s.env != "" {
			t.Setenv(s.env, s.val)
		}
		c := NewClient()
		assert.Equal(t, filepath.FromSlash(s.hub), c.CacheDir, "after setting %s", s.env)
		assert.Equal(t, filepath.FromSlash(s.file), c.FileCacheDir, "after setting %s", s.env)
	}
}

func TestNewClientEndpointTokenOffline(t *testing.T) {
	clearEnv(t)
	c := NewClient()
	assert.Equal(t, DefaultEndpoint, c.Endpoint)
	assert.Empty(t, c.Token)
	assert.False(t, c.Offline)

	t.Setenv("HF_ENDPOINT", "https://mirror.example")
	assert.Equal(t, "https://mirror.example/", NewClient().Endpoint)
	t.Setenv("MODEL_ENDPOINT", "https://models.example/")
	assert.Equal(t, "https://models.example/", NewClient().Endpoint, "MODEL_ENDPOINT wins over HF_ENDPOINT")

	t.Setenv("HF_TOKEN", "hf_secret")
	assert.Equal(t, "hf_secret", NewClient().Token)

	for _, tc := range []struct {
		env, val string
		want     bool
	}{
		{"LLAMA_ARG_OFFLINE", "1", true},
		{"LLAMA_ARG_OFFLINE", "true", true},
		{"LLAMA_ARG_OFFLINE", "enabled", true},
		{"LLAMA_ARG_OFFLINE", "0", false},
		{"LLAMA_ARG_OFFLINE", "yes", false}, // not one of llama.cpp's truthy words
		{"LLAMA_OFFLINE", "1", true},
		{"HF_HUB_OFFLINE", "YES", true},
		{"HF_HUB_OFFLINE", "0", false},
	} {
		clearEnv(t)
		t.Setenv(tc.env, tc.val)
		assert.Equal(t, tc.want, NewClient().Offline, "%s=%s", tc.env, tc.val)
	}
}

func TestZeroClient(t *testing.T) {
	clearEnv(t)
	t.Setenv("LLAMA_CACHE", "/llama")
	var c Client
	assert.Equal(t, DefaultEndpoint, c.endpoint())
	d, err := c.cacheDir()
	require.NoError(t, err)
	assert.Equal(t, filepath.FromSlash("/llama"), d)
	assert.Equal(t, 3, c.attempts(), "llama.cpp's 3 attempts")
	c.Retries = -1
	assert.Equal(t, 1, c.attempts())

	c.Token = "hf_x"
	hubURL, _ := url.Parse("https://huggingface.co/a/b/resolve/main/f.gguf")
	other, _ := url.Parse("https://example.com/f.gguf")
	assert.True(t, c.sendsTokenTo(hubURL))
	assert.False(t, c.sendsTokenTo(other), "the token never leaves the hub's host")
}
