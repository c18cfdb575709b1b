package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/llamago/llamago/examples/internal/modelfile"
	"github.com/llamago/llamago/internal/testmodel"
	"github.com/llamago/llamago/llama/gguf"
)

// The official OpenAI client (npm package openai) drives a server binary started by
// each test, over loopback HTTP. openaiVersion is the newest release that runs on Node 20.
const openaiVersion = "6.30.1"

const testKey = "test-key"

func TestMain(m *testing.M) { os.Exit(testmodel.Main(m)) }

var (
	buildOnce  sync.Once
	binPath    string
	buildErr   error
	npmOnce    sync.Once
	nodeModule string
	npmErr     error
)

// serverBinary builds this command once per test process.
func serverBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "llamago-server-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "server")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	require.NoError(t, buildErr)
	return binPath
}

// openaiModules installs the openai npm package once into the cache and returns its
// node_modules directory.
func openaiModules(t *testing.T) string {
	t.Helper()
	npmOnce.Do(func() {
		cache, err := modelfile.CacheDir() // .../llamago/models
		if err != nil {
			npmErr = err
			return
		}
		prefix := filepath.Join(filepath.Dir(cache), "npm", "openai-"+openaiVersion)
		nodeModule = filepath.Join(prefix, "node_modules")
		if _, err := os.Stat(filepath.Join(nodeModule, "openai", "package.json")); err == nil {
			return
		}
		cmd := exec.Command("npm", "install", "--no-save", "--no-audit", "--no-fund", "--prefix", prefix, "openai@"+openaiVersion)
		if out, err := cmd.CombinedOutput(); err != nil {
			npmErr = fmt.Errorf("npm install openai@%s: %v\n%s", openaiVersion, err, out)
		}
	})
	require.NoError(t, npmErr, "the tests need node and npm")
	return nodeModule
}

type runningServer struct {
	url     string // http://host:port
	cmd     *exec.Cmd
	stderr  *lockedBuffer
	exited  chan struct{} // closed when the process has ended, with waitErr set
	waitErr error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var listening = regexp.MustCompile(`msg=listening url=(\S+)`)

// startServer starts the server on a free loopback port with the tiny Qwen2 model
// (whose vocabulary carries a ChatML template), waits until it has loaded the model,
// and stops it when the test ends.
func startServer(t *testing.T, args ...string) *runningServer {
	t.Helper()
	model := testmodel.Path(t, "qwen2-tiny", gguf.TypeQ8_0)
	return launchServer(t, true, append([]string{"-model", model}, args...)...)
}

// launchServer starts the server with args and waits until it listens, and with ready
// until it has loaded its model.
func launchServer(t *testing.T, ready bool, args ...string) *runningServer {
	t.Helper()
	args = append([]string{"-port", "0", "-api-key", testKey, "-np", "4", "-c", "4096"}, args...)
	cmd := exec.Command(serverBinary(t), args...)
	pr, pw := io.Pipe()
	s := &runningServer{cmd: cmd, stderr: &lockedBuffer{}, exited: make(chan struct{})}
	cmd.Stderr = io.MultiWriter(pw, s.stderr)
	require.NoError(t, cmd.Start())
	go func() { s.waitErr = cmd.Wait(); close(s.exited); pw.Close() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("server log:\n%s", s.stderr.String())
		}
	})
	found, loaded := make(chan string, 1), make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if m := listening.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
			}
			if strings.Contains(sc.Text(), "msg=ready") {
				close(loaded)
				break
			}
		}
		io.Copy(io.Discard, pr)
	}()
	wait := func(what string, ch <-chan struct{}) {
		select {
		case <-ch:
		case <-s.exited:
			t.Fatalf("server exited: %v\n%s", s.waitErr, s.stderr.String())
		case <-time.After(2 * time.Minute):
			t.Fatalf("server did not %s:\n%s", what, s.stderr.String())
		}
	}
	listens := make(chan struct{})
	go func() { s.url = <-found; close(listens) }()
	wait("listen", listens)
	if ready {
		wait("load its model", loaded)
	}
	return s
}

// client runs a scenario of testdata/client.cjs against s and decodes its report into v.
func (s *runningServer) client(t *testing.T, scenario string, v any, env ...string) {
	t.Helper()
	cmd := exec.Command("node", "testdata/client.cjs", scenario, s.url+"/v1", testKey)
	cmd.Env = append(append(os.Environ(), "NODE_PATH="+openaiModules(t)), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "node client %s: %s\n%s", scenario, out, stderr.String())
	require.NoError(t, json.Unmarshal(out, v), "%s", out)
}

type apiErr struct {
	Status  int     `json:"status"`
	Type    *string `json:"type"`
	Code    *string `json:"code"`
	Message string  `json:"message"`
}

func TestOpenAIClient(t *testing.T) {
	s := startServer(t)

	t.Run("models", func(t *testing.T) {
		var r struct {
			IDs     []string `json:"ids"`
			One     string   `json:"one"`
			Missing apiErr   `json:"missing"`
		}
		s.client(t, "models", &r)
		require.Len(t, r.IDs, 1)
		assert.Equal(t, strings.TrimSuffix(filepath.Base(testmodel.Path(t, "qwen2-tiny", gguf.TypeQ8_0)), ".gguf"), r.IDs[0])
		assert.Equal(t, r.IDs[0], r.One)
		assert.Equal(t, 404, r.Missing.Status)
	})

	t.Run("chat", func(t *testing.T) {
		var r struct {
			Object  string `json:"object"`
			ID      string `json:"id"`
			Choices []struct {
				Message struct {
					Role    string `json:"role"`
					Content string `json:"content"`
				} `json:"message"`
				FinishReason string `json:"finish_reason"`
			} `json:"choices"`
			Usage struct {
				PromptTokens     int `json:"prompt_tokens"`
				CompletionTokens int `json:"completion_tokens"`
				TotalTokens      int `json:"total_tokens"`
			} `json:"usage"`
		}
		s.client(t, "chat", &r)
		assert.Equal(t, "chat.completion", r.Object)
		assert.True(t, strings.HasPrefix(r.ID, "chatcmpl-"))
		require.Len(t, r.Choices, 1)
		assert.Equal(t, "assistant", r.Choices[0].Message.Role)
		assert.Contains(t, []string{"stop", "length"}, r.Choices[0].FinishReason)
		assert.Positive(t, r.Usage.PromptTokens)
		assert.LessOrEqual(t, r.Usage.CompletionTokens, 12)
		assert.Equal(t, r.Usage.PromptTokens+r.Usage.CompletionTokens, r.Usage.TotalTokens)
	})

	t.Run("stream", func(t *testing.T) {
		var r struct {
			Text          string `json:"text"`
			Chunks        int    `json:"chunks"`
			Finish        string `json:"finish"`
			Role          string `json:"role"`
			NonStreamText string `json:"nonStreamText"`
			Usage         *struct {
				CompletionTokens int `json:"completion_tokens"`
				Details          struct {
					Cached int `json:"cached_tokens"`
				} `json:"prompt_tokens_details"`
			} `json:"usage"`
		}
		s.client(t, "stream", &r)
		assert.Equal(t, "assistant", r.Role)
		assert.Greater(t, r.Chunks, 3)
		assert.Contains(t, []string{"stop", "length"}, r.Finish)
		require.NotNil(t, r.Usage, "include_usage sends a usage chunk")
		assert.Positive(t, r.Usage.CompletionTokens)
		assert.Equal(t, r.NonStreamText, r.Text, "greedy: the streamed text equals the non-streamed one")
	})

	t.Run("tools", func(t *testing.T) {
		var r struct {
			Finish         string  `json:"finish"`
			Role           string  `json:"role"`
			StreamFinish   string  `json:"streamFinish"`
			FollowUp       string  `json:"followUp"`
			FollowUpPrompt int     `json:"followUpPrompt"`
			BadTool        *apiErr `json:"badTool"`
		}
		s.client(t, "tools", &r)
		assert.Contains(t, []string{"stop", "length", "tool_calls"}, r.Finish)
		assert.Equal(t, "assistant", r.Role)
		assert.Contains(t, []string{"stop", "length", "tool_calls"}, r.StreamFinish)
		assert.Contains(t, []string{"stop", "length"}, r.FollowUp)
		assert.Greater(t, r.FollowUpPrompt, 30, "the tool call and its result are in the prompt")
		require.NotNil(t, r.BadTool)
		assert.Equal(t, 400, r.BadTool.Status)
	})

	t.Run("json_schema", func(t *testing.T) {
		var r struct {
			Results []struct {
				Content string `json:"content"`
				Finish  string `json:"finish"`
			} `json:"results"`
		}
		s.client(t, "json", &r)
		require.Len(t, r.Results, 3)
		for _, res := range r.Results {
			var v struct {
				Name *string  `json:"name"`
				Age  *int     `json:"age"`
				Tags []string `json:"tags"`
			}
			dec := json.NewDecoder(strings.NewReader(res.Content))
			dec.DisallowUnknownFields()
			require.NoError(t, dec.Decode(&v), "%q", res.Content)
			require.NotNil(t, v.Name)
			require.NotNil(t, v.Age)
			assert.LessOrEqual(t, len([]rune(*v.Name)), 12)
			assert.True(t, *v.Age >= 0 && *v.Age <= 150, "age %d", *v.Age)
			assert.LessOrEqual(t, len(v.Tags), 3)
			for _, tag := range v.Tags {
				assert.Contains(t, []string{"a", "b"}, tag)
			}
			assert.Equal(t, "stop", res.Finish)
		}
	})

	t.Run("completions", func(t *testing.T) {
		var r struct {
			Object     string `json:"object"`
			Text       string `json:"text"`
			Finish     string `json:"finish"`
			StreamText string `json:"streamText"`
			Usage      struct {
				CompletionTokens int `json:"completion_tokens"`
			} `json:"usage"`
		}
		s.client(t, "completions", &r)
		assert.Equal(t, "text_completion", r.Object)
		assert.NotEmpty(t, r.Text)
		assert.Equal(t, r.Text, r.StreamText)
		assert.LessOrEqual(t, r.Usage.CompletionTokens, 8)
	})

	t.Run("embeddings", func(t *testing.T) {
		var r struct {
			N          int       `json:"n"`
			Dims       []int     `json:"dims"`
			First      []float64 `json:"first"`
			FirstFloat []float64 `json:"firstFloat"`
			Usage      struct {
				PromptTokens int `json:"prompt_tokens"`
			} `json:"usage"`
		}
		s.client(t, "embeddings", &r)
		assert.Equal(t, 2, r.N)
		assert.Equal(t, []int{64, 64}, r.Dims, "the tiny model's embedding size")
		require.Len(t, r.FirstFloat, 64)
		var norm float64
		for i, v := range r.First {
			assert.InDelta(t, v, r.FirstFloat[i], 1e-6, "base64 and float encodings agree")
			norm += v * v
		}
		assert.InDelta(t, 1, norm, 1e-4, "normalized")
		assert.Positive(t, r.Usage.PromptTokens)
	})

	t.Run("errors", func(t *testing.T) {
		var r map[string]json.RawMessage
		s.client(t, "errors", &r)
		status := func(name string) apiErr {
			var e apiErr
			require.NoError(t, json.Unmarshal(r[name], &e), name)
			return e
		}
		assert.Equal(t, 401, status("auth").Status)
		assert.Equal(t, 400, status("empty").Status)
		assert.Equal(t, 400, status("role").Status)
		assert.Equal(t, 400, status("temperature").Status)
		tooLong := status("tooLong")
		assert.Equal(t, 400, tooLong.Status)
		require.NotNil(t, tooLong.Code)
		assert.Equal(t, "context_length_exceeded", *tooLong.Code)
		assert.Equal(t, 413, status("tooLarge").Status)
		assert.Equal(t, 400, status("schema").Status)
		assert.JSONEq(t, `"length"`, string(r["okAfter"]))
	})

	t.Run("metrics", func(t *testing.T) {
		req, _ := http.NewRequest("GET", s.url+"/metrics", nil)
		req.Header.Set("Authorization", "Bearer "+testKey)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		assert.Equal(t, 200, resp.StatusCode)
		for _, name := range []string{"llamago_requests_total", "llamago_generated_tokens_total", "llamago_queue_depth 0",
			"llamago_slots_active 0", "llamago_slots 4", "llamago_prompt_cache_hits_total", "llamago_tokens_per_second"} {
			assert.Contains(t, string(body), name)
		}
		assert.NotContains(t, string(body), "llamago_requests_total 0\n")

		resp, err = http.Get(s.url + "/metrics")
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, 401, resp.StatusCode, "metrics need the key")
		resp, err = http.Get(s.url + "/health")
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, 200, resp.StatusCode, "health does not")
	})
}

// 32 streaming clients, a fixed number of requests: every response complete, none lost.
func TestLoad(t *testing.T) {
	s := startServer(t, "-np", "8")
	var r struct {
		Clients           int      `json:"clients"`
		Requests          int      `json:"requests"`
		Complete          int      `json:"complete"`
		Malformed         int      `json:"malformed"`
		Errors            []apiErr `json:"errors"`
		Tokens            int      `json:"tokens"`
		Seconds           float64  `json:"seconds"`
		RequestsPerSecond float64  `json:"requestsPerSecond"`
		TokensPerSecond   float64  `json:"tokensPerSecond"`
	}
	s.client(t, "load", &r, "CLIENTS=32", "REQUESTS=96", "MAX_TOKENS=16")
	assert.Empty(t, r.Errors)
	assert.Zero(t, r.Malformed)
	assert.Equal(t, r.Requests, r.Complete)
	t.Logf("load: %d clients, %d requests in %.1f s: %.1f requests/s, %d tokens, %.1f generated tokens/s (8 slots)",
		r.Clients, r.Requests, r.Seconds, r.RequestsPerSecond, r.Tokens, r.TokensPerSecond)
}

// Shutdown lets a stream in flight finish; past the grace period it ends with an
// error event, never silently.
func TestGracefulShutdown(t *testing.T) {
	for _, tc := range []struct {
		name, grace string
		tokens      int // the first lasts well within its grace on a loaded machine, the second not
		finished    bool
	}{
		{"finishes within grace", "60s", 200, true},
		{"error event after grace", "300ms", 3000, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, "-shutdown-grace", tc.grace)
			out := s.terminateDuring(t, "slow", fmt.Sprintf("MAX_TOKENS=%d", tc.tokens))
			var r struct {
				Finish *string `json:"finish"`
				Error  *apiErr `json:"error"`
				Length int     `json:"length"`
			}
			require.NoError(t, json.Unmarshal(out, &r), string(out))
			if tc.finished {
				assert.Nil(t, r.Error)
				require.NotNil(t, r.Finish)
				// A normal end: the token budget, or an end-of-generation token that the
				// randomly seeded default sampler can draw.
				assert.Contains(t, []string{"length", "stop"}, *r.Finish)
				assert.Positive(t, r.Length)
			} else {
				require.NotNil(t, r.Error, "the client saw an error event")
				assert.Contains(t, r.Error.Message, "shutting down")
				assert.Nil(t, r.Finish)
			}
		})
	}
}

// terminateDuring runs a scenario of testdata/client.cjs that prints STARTED to stderr
// once its streams are under way, sends the server SIGTERM then, and returns the
// client's report after both have ended (the server cleanly).
func (s *runningServer) terminateDuring(t *testing.T, scenario string, env ...string) []byte {
	t.Helper()
	cmd := exec.Command("node", "testdata/client.cjs", scenario, s.url+"/v1", testKey)
	cmd.Env = append(append(os.Environ(), "NODE_PATH="+openaiModules(t)), env...)
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	var out bytes.Buffer
	cmd.Stdout = &out
	require.NoError(t, cmd.Start())
	started := bufio.NewScanner(stderr)
	require.True(t, started.Scan(), "the streams started")
	require.Equal(t, "STARTED", started.Text())
	require.NoError(t, s.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, cmd.Wait())
	select {
	case <-s.exited:
		assert.NoError(t, s.waitErr, "clean exit")
	case <-time.After(time.Minute):
		t.Fatal("the server did not exit")
	}
	return out.Bytes()
}
