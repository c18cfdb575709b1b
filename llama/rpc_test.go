//go:build rpc

package llama

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/llamago/llamago/internal/rpcwire"
	"github.com/llamago/llamago/internal/testmodel"
	"github.com/llamago/llamago/llama/gguf"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The RPC tests start examples/rpc-server processes on loopback ports and stop them
// themselves; `make test` runs them with -tags rpc. The workers serve their CPU in every
// build (-device CPU), so the results compare exactly with the local CPU.

var rpcServerBin struct {
	once sync.Once
	path string
	out  []byte
	err  error
}

// rpcServerBinary builds examples/rpc-server once per test process.
func rpcServerBinary(t *testing.T) string {
	t.Helper()
	rpcServerBin.once.Do(func() {
		rpcServerBin.path = filepath.Join(testmodel.Dir(t), "rpc-server")
		cmd := exec.Command("go", "build", "-tags", "rpc "+Backend, "-o", rpcServerBin.path, "./examples/rpc-server")
		cmd.Dir = ".."
		rpcServerBin.out, rpcServerBin.err = cmd.CombinedOutput()
	})
	require.NoError(t, rpcServerBin.err, "go build ./examples/rpc-server: %s", rpcServerBin.out)
	return rpcServerBin.path
}

// rpcWorker is an examples/rpc-server process.
type rpcWorker struct {
	cmd    *exec.Cmd
	addr   string
	mu     sync.Mutex
	stderr strings.Builder
	exited chan struct{}
}

func (w *rpcWorker) output() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stderr.String()
}

// kill ends the worker and waits until it is gone.
func (w *rpcWorker) kill() {
	w.cmd.Process.Signal(syscall.SIGCONT) // a stopped worker dies too
	w.cmd.Process.Kill()
	<-w.exited
}

// startRPCWorker starts a worker on a free loopback port (or args' -port) and waits until
// it accepts connections. The test's cleanup kills it.
func startRPCWorker(t *testing.T, args ...string) *rpcWorker {
	t.Helper()
	bin := rpcServerBinary(t)
	if !strings.Contains(strings.Join(args, " "), "-port") {
		args = append([]string{"-port", "0"}, args...)
	}
	if !strings.Contains(strings.Join(args, " "), "-device") {
		// The CPU in every build: the tests compare with the local CPU exactly.
		args = append([]string{"-device", "CPU"}, args...)
	}
	w := &rpcWorker{cmd: exec.Command(bin, append([]string{"-threads", "1"}, args...)...), exited: make(chan struct{})}
	stderr, err := w.cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, w.cmd.Start())
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			w.mu.Lock()
			w.stderr.WriteString(line + "\n")
			w.mu.Unlock()
			if a, ok := strings.CutPrefix(line, "rpc-server: listening on "); ok {
				addrc <- strings.Fields(a)[0]
			}
		}
		io.Copy(io.Discard, stderr)
		w.cmd.Wait()
		close(w.exited)
	}()
	t.Cleanup(w.kill)
	select {
	case w.addr = <-addrc:
	case <-w.exited:
		t.Fatalf("rpc-server exited: %s", w.output())
	case <-time.After(2 * time.Minute):
		t.Fatalf("rpc-server did not start: %s", w.output())
	}
	c, err := net.DialTimeout("tcp", w.addr, 5*time.Second)
	require.NoError(t, err)
	c.Close()
	return w
}

// rpcShape is the model of the RPC tests: mistral-tiny's greedy tokens vary (llama-tiny's
// repeat one token), which makes their comparison worth something.
const rpcShape = "mistral-tiny"

// logLines is a slog.Handler keeping every message.
type logLines struct {
	mu sync.Mutex
	sb strings.Builder
}

func (l *logLines) Enabled(context.Context, slog.Level) bool { return true }
func (l *logLines) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logLines) WithGroup(string) slog.Handler            { return l }
func (l *logLines) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sb.WriteString(r.Message + "\n")
	return nil
}

func (l *logLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sb.String()
}

// rpcGreedyTokens generates n tokens greedily from a fixed prompt.
func rpcGreedyTokens(t *testing.T, m *Model, n int) []Token {
	t.Helper()
	c, err := m.NewContext(&ContextParams{NCtx: 256, Threads: 1, FlashAttention: FlashAttentionOff})
	require.NoError(t, err)
	defer c.Close()
	s, err := NewSampler(m, Greedy())
	require.NoError(t, err)
	defer s.Close()
	prompt, err := m.Tokenize("The quick brown fox jumps over the lazy dog", AddSpecial)
	require.NoError(t, err)
	var got []Token
	for g, err := range c.Generate(t.Context(), prompt, s, &GenerateParams{MaxTokens: n, IgnoreEOG: true}) {
		require.NoError(t, err)
		got = append(got, g.Token)
	}
	return got
}

// rpcPromptLogits decodes the test prompt and returns the logits of its last token.
func rpcPromptLogits(t *testing.T, m *Model) []float32 {
	t.Helper()
	c, err := m.NewContext(&ContextParams{NCtx: 256, Threads: 1, FlashAttention: FlashAttentionOff})
	require.NoError(t, err)
	defer c.Close()
	prompt, err := m.Tokenize("The quick brown fox jumps over the lazy dog", AddSpecial)
	require.NoError(t, err)
	require.NoError(t, c.DecodeTokens(t.Context(), prompt, 0, 0))
	logits, err := c.Logits(-1)
	require.NoError(t, err)
	return logits
}

func rpcDevicesOf(t *testing.T, devs ...[]RPCDevice) []Device {
	t.Helper()
	var out []Device
	for _, d := range devs {
		require.Len(t, d, 1)
		out = append(out, d[0].Device)
	}
	return out
}

// Two workers and the local CPU: the model (2 layers) has layer 0 on the CPU (the input layer is
// always there), layer 1 on the first worker and the output layer on the second. Its
// greedy tokens equal those of the model loaded locally.
func TestRPCSplitMatchesLocal(t *testing.T) {
	const mem = 256 << 20
	w1 := startRPCWorker(t, "-mem", "256MiB")
	w2 := startRPCWorker(t, "-mem", "256MiB")
	ctx := t.Context()
	d1, err := AddRPCServer(ctx, w1.addr, &RPCServerParams{Timeout: 30 * time.Second})
	require.NoError(t, err)
	d2, err := AddRPCServer(ctx, w2.addr, &RPCServerParams{Timeout: 30 * time.Second})
	require.NoError(t, err)
	for i, d := range [][]RPCDevice{d1, d2} {
		addr := []string{w1.addr, w2.addr}[i]
		require.Len(t, d, 1)
		assert.NoError(t, d[0].Err)
		assert.Equal(t, addr, d[0].Endpoint)
		assert.Equal(t, addr, d[0].Description)
		assert.Equal(t, "RPC", d[0].Backend)
		assert.Equal(t, DeviceGPU, d[0].Type)
		assert.Equal(t, -1, d[0].Index)
		assert.True(t, strings.HasPrefix(d[0].Name, "RPC"), d[0].Name)
		assert.Equal(t, uint64(mem), d[0].TotalMemory, "the worker offers -mem")
		assert.Equal(t, uint64(mem), d[0].FreeMemory)
	}
	assert.NotEqual(t, d1[0].Name, d2[0].Name)
	again, err := AddRPCServer(ctx, w1.addr, nil)
	require.NoError(t, err)
	assert.Equal(t, d1[0].Name, again[0].Name, "adding an endpoint again returns its devices")
	listed := map[string]RPCDevice{}
	for _, d := range RPCDevices() {
		listed[d.Endpoint] = d
	}
	assert.Equal(t, d1[0].Name, listed[w1.addr].Name)
	assert.Equal(t, d2[0].Name, listed[w2.addr].Name)
	for _, d := range Devices() {
		assert.NotEqual(t, "RPC", d.Backend, "remote devices are used only where ModelParams.Devices names them")
	}

	path := synthModel(t, rpcShape, gguf.TypeF16)
	local, err := LoadModel(ctx, path, &ModelParams{GPULayers: 0})
	require.NoError(t, err)
	defer local.Close()
	want := rpcGreedyTokens(t, local, 32)
	wantLogits := rpcPromptLogits(t, local)

	var logged logLines
	SetLogger(slog.New(&logged))
	split, err := LoadModel(ctx, path, &ModelParams{
		Devices: rpcDevicesOf(t, d1, d2), GPULayers: 2, TensorSplit: []float32{1, 1},
	})
	SetLogger(nil)
	require.NoError(t, err)
	defer split.Close()
	for layer, dev := range []string{"CPU", d1[0].Name, d2[0].Name} { // layer 2: the output layer
		assert.Contains(t, logged.String(), fmt.Sprintf("layer %3d assigned to device %s,", layer, dev))
	}
	for _, d := range RPCDevices() {
		if d.Endpoint == w1.addr || d.Endpoint == w2.addr {
			assert.Less(t, d.FreeMemory, uint64(mem), "%s holds layers of the model", d.Endpoint)
		}
	}
	assert.Equal(t, want, rpcGreedyTokens(t, split, 32))
	assert.Equal(t, want, rpcGreedyTokens(t, split, 32), "a second context on the same workers")
	// The same CPU kernels compute on the workers: the logits agree (bit for bit on the
	// 2-core CI machine; a tolerance for CPUs whose local weights take another layout).
	assert.InDeltaSlice(t, wantLogits, rpcPromptLogits(t, split), 1e-4)
}

// Two workers and the CPU again; one worker is killed while the model generates: the
// generation ends with an error naming that worker within the timeout, the model stays
// failed, Close returns, and the process goes on working (the CPU, the other worker).
// Loading onto the dead worker fails naming it; started again on the same port, it is
// used again.
func TestRPCWorkerKilledMidGeneration(t *testing.T) {
	const timeout = 20 * time.Second
	w1, w2 := startRPCWorker(t), startRPCWorker(t)
	ctx := t.Context()
	d1, err := AddRPCServer(ctx, w1.addr, &RPCServerParams{Timeout: timeout})
	require.NoError(t, err)
	d2, err := AddRPCServer(ctx, w2.addr, &RPCServerParams{Timeout: timeout})
	require.NoError(t, err)
	path := synthModel(t, rpcShape, gguf.TypeF16)
	split := &ModelParams{Devices: rpcDevicesOf(t, d1, d2), GPULayers: 2, TensorSplit: []float32{1, 1}}
	m, err := LoadModel(ctx, path, split)
	require.NoError(t, err)
	c, err := m.NewContext(&ContextParams{NCtx: 512, Threads: 1})
	require.NoError(t, err)
	s, err := NewSampler(m, Greedy())
	require.NoError(t, err)
	defer s.Close()
	prompt, err := m.Tokenize("Once upon a time", AddSpecial)
	require.NoError(t, err)

	var killed time.Time
	var genErr error
	n := 0
	for _, err := range c.Generate(ctx, prompt, s, &GenerateParams{IgnoreEOG: true, MaxTokens: 400}) {
		if err != nil {
			genErr = err
			break
		}
		if n++; n == 5 {
			w1.kill()
			killed = time.Now()
		}
	}
	require.Error(t, genErr, "generation went on after the worker died")
	elapsed := time.Since(killed)
	t.Logf("error %v after the kill: %v", elapsed, genErr)
	assert.Less(t, elapsed, timeout, "a dead worker is noticed without waiting for the timeout")
	assert.ErrorIs(t, genErr, ErrRPCWorker)
	var re *RPCError
	require.ErrorAs(t, genErr, &re)
	assert.Equal(t, w1.addr, re.Endpoint)
	assert.Contains(t, genErr.Error(), w1.addr)
	assert.True(t, strings.HasPrefix(genErr.Error(), "llama: "), genErr.Error())

	// The model's layers are gone: every decode fails the same way, at once.
	start := time.Now()
	assert.ErrorIs(t, c.DecodeTokens(ctx, prompt[:1], 0, 0), ErrRPCWorker)
	if c2, err := m.NewContext(&ContextParams{NCtx: 256, Threads: 1}); err == nil {
		assert.ErrorIs(t, c2.DecodeTokens(ctx, prompt, 0, 0), ErrRPCWorker)
		assert.NoError(t, c2.Close())
	}
	assert.NoError(t, c.Close())
	assert.NoError(t, m.Close())
	assert.Less(t, time.Since(start), 5*time.Second, "nothing waits for the dead worker")

	// The process still works: on the CPU, and on the other worker.
	local, err := LoadModel(ctx, path, &ModelParams{GPULayers: 0})
	require.NoError(t, err)
	defer local.Close()
	want := rpcGreedyTokens(t, local, 16)
	other, err := LoadModel(ctx, path, &ModelParams{Devices: rpcDevicesOf(t, d2), GPULayers: -1})
	require.NoError(t, err)
	assert.Equal(t, want, rpcGreedyTokens(t, other, 16))
	assert.NoError(t, other.Close())

	// Down at load time: the error names the endpoint.
	_, err = LoadModel(ctx, path, split)
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrRPCWorker)
	assert.ErrorIs(t, err, syscall.ECONNREFUSED)
	var le *LoadError
	assert.ErrorAs(t, err, &le)
	assert.Contains(t, err.Error(), w1.addr)
	for _, d := range RPCDevices() {
		switch d.Endpoint {
		case w1.addr:
			assert.ErrorIs(t, d.Err, ErrRPCWorker)
			assert.Zero(t, d.TotalMemory)
		case w2.addr:
			assert.NoError(t, d.Err)
			assert.NotZero(t, d.TotalMemory)
		}
	}

	// The worker comes back on the same port: the same devices work again.
	_, port, err := net.SplitHostPort(w1.addr)
	require.NoError(t, err)
	back := startRPCWorker(t, "-port", port)
	require.Equal(t, w1.addr, back.addr)
	m2, err := LoadModel(ctx, path, split)
	require.NoError(t, err)
	defer m2.Close()
	assert.Equal(t, want, rpcGreedyTokens(t, m2, 16))
}

// A worker killed while the model loads onto it: LoadModel fails naming it.
func TestRPCWorkerKilledMidLoad(t *testing.T) {
	w := startRPCWorker(t)
	ctx := t.Context()
	devs, err := AddRPCServer(ctx, w.addr, &RPCServerParams{Timeout: 20 * time.Second})
	require.NoError(t, err)
	var once sync.Once
	_, err = LoadModel(ctx, synthModel(t, "mistral-256", gguf.TypeF16), &ModelParams{
		Devices: rpcDevicesOf(t, devs), GPULayers: -1,
		Progress: func(f float32) {
			if f > 0.3 {
				once.Do(w.kill)
			}
		},
	})
	require.Error(t, err)
	t.Log(err)
	assert.ErrorIs(t, err, ErrRPCWorker)
	var le *LoadError
	assert.ErrorAs(t, err, &le)
	assert.Contains(t, err.Error(), w.addr)
}

// A worker that hangs (stopped, not dead) mid-generation: the error comes after the
// timeout, never a hang.
func TestRPCWorkerHungMidGeneration(t *testing.T) {
	const timeout = 2 * time.Second
	w := startRPCWorker(t)
	ctx := t.Context()
	devs, err := AddRPCServer(ctx, w.addr, &RPCServerParams{Timeout: timeout})
	require.NoError(t, err)
	m, err := LoadModel(ctx, synthModel(t, rpcShape, gguf.TypeF16), &ModelParams{Devices: rpcDevicesOf(t, devs), GPULayers: -1})
	require.NoError(t, err)
	defer m.Close()
	c, err := m.NewContext(&ContextParams{NCtx: 512, Threads: 1})
	require.NoError(t, err)
	defer c.Close()
	s, err := NewSampler(m, Greedy())
	require.NoError(t, err)
	defer s.Close()
	prompt, err := m.Tokenize("Once upon a time", AddSpecial)
	require.NoError(t, err)

	var stopped time.Time
	var genErr error
	n := 0
	for _, err := range c.Generate(ctx, prompt, s, &GenerateParams{IgnoreEOG: true, MaxTokens: 400}) {
		if err != nil {
			genErr = err
			break
		}
		if n++; n == 3 {
			require.NoError(t, w.cmd.Process.Signal(syscall.SIGSTOP))
			stopped = time.Now()
		}
	}
	elapsed := time.Since(stopped)
	t.Logf("error %v after SIGSTOP: %v", elapsed, genErr)
	require.Error(t, genErr)
	assert.ErrorIs(t, genErr, ErrRPCWorker)
	assert.ErrorIs(t, genErr, os.ErrDeadlineExceeded)
	assert.Contains(t, genErr.Error(), w.addr)
	assert.GreaterOrEqual(t, elapsed, timeout-100*time.Millisecond)
	assert.Less(t, elapsed, timeout+10*time.Second)
}

func TestRPCAddServerErrors(t *testing.T) {
	ctx := t.Context()
	// Nothing listens on a port just released.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	_, err = AddRPCServer(ctx, addr, &RPCServerParams{Timeout: 5 * time.Second})
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrRPCWorker)
	assert.ErrorIs(t, err, syscall.ECONNREFUSED)
	assert.Contains(t, err.Error(), addr)

	// Something that accepts but never answers: the timeout bounds the wait.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	start := time.Now()
	_, err = AddRPCServer(ctx, silent.Addr().String(), &RPCServerParams{Timeout: time.Second})
	assert.ErrorIs(t, err, os.ErrDeadlineExceeded)
	assert.Contains(t, err.Error(), silent.Addr().String())
	assert.Less(t, time.Since(start), 5*time.Second)

	// Cancellation.
	cctx, cancel := context.WithCancelCause(ctx)
	cancel(errors.New("stop"))
	_, err = AddRPCServer(cctx, silent.Addr().String(), nil)
	assert.Error(t, err)

	for _, bad := range []string{"", "host", "127.0.0.1:", ":50052", "127.0.0.1:0", "127.0.0.1:70000", "127.0.0.1:x"} {
		_, err := AddRPCServer(ctx, bad, nil)
		assert.ErrorIs(t, err, ErrInvalidParams, "%q", bad)
	}
	_, err = AddRPCServer(ctx, "127.0.0.1:1", &RPCServerParams{Timeout: -time.Second})
	assert.ErrorIs(t, err, ErrInvalidParams)

	// A remote device name that was never added.
	_, err = LoadModel(ctx, synthModel(t, rpcShape, gguf.TypeF16), &ModelParams{
		Devices: []Device{{Index: -1, Name: "RPC999", Backend: "RPC"}}, GPULayers: -1})
	assert.ErrorIs(t, err, ErrInvalidParams)
}

// A worker's -mem limits what clients see and what they can allocate.
func TestRPCWorkerMemoryLimit(t *testing.T) {
	w := startRPCWorker(t, "-mem", "8MiB")
	ctx := t.Context()
	devs, err := AddRPCServer(ctx, w.addr, &RPCServerParams{Timeout: 30 * time.Second})
	require.NoError(t, err)
	require.Len(t, devs, 1)
	assert.Equal(t, uint64(8<<20), devs[0].TotalMemory)
	// llama-tiny's output matrix (its tied token embedding) alone is 16 MiB in F16.
	path := synthModel(t, "llama-tiny", gguf.TypeF16)
	_, err = LoadModel(ctx, path, &ModelParams{Devices: rpcDevicesOf(t, devs), GPULayers: -1})
	require.Error(t, err)
	assert.NotErrorIs(t, err, ErrRPCWorker, "the worker is fine, the model too large for it")
	// The worker still answers, with all its memory free again.
	for _, d := range RPCDevices() {
		if d.Endpoint == w.addr {
			assert.NoError(t, d.Err)
			assert.Equal(t, uint64(8<<20), d.FreeMemory)
		}
	}
}

// ListenRPC in this process: parameters, then a client (this process too) through it,
// then Serve ends with its context.
func TestRPCListen(t *testing.T) {
	for _, p := range []*RPCWorkerParams{
		{Port: -1}, {Port: 65536}, {Threads: -1}, {Threads: 1000},
		{Devices: []Device{{Index: -1, Name: "RPC0", Backend: "RPC"}}},
		{Devices: []Device{{Index: 99, Name: "CPU"}}},
	} {
		_, err := ListenRPC(p)
		assert.ErrorIs(t, err, ErrInvalidParams, "%+v", p)
	}

	var cpu []Device
	for _, d := range Devices() {
		if d.Type == DeviceCPU {
			cpu = append(cpu, d)
		}
	}
	require.NotEmpty(t, cpu)
	cache := filepath.Join(t.TempDir(), "cache")
	w, err := ListenRPC(&RPCWorkerParams{Devices: cpu[:1], Threads: 1, Memory: 128 << 20, CacheDir: cache})
	require.NoError(t, err)
	assert.DirExists(t, cache)
	defer w.Close()
	assert.True(t, w.Loopback())
	assert.True(t, strings.HasPrefix(w.Addr(), "127.0.0.1:"), w.Addr())
	require.Len(t, w.Devices(), 1)
	assert.Equal(t, DeviceCPU, w.Devices()[0].Type)

	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- w.Serve(ctx) }()
	devs, err := AddRPCServer(t.Context(), w.Addr(), &RPCServerParams{Timeout: 30 * time.Second})
	require.NoError(t, err)
	require.Len(t, devs, 1)
	assert.Equal(t, uint64(128<<20), devs[0].TotalMemory)
	m, err := LoadModel(t.Context(), synthModel(t, rpcShape, gguf.TypeF16), &ModelParams{Devices: rpcDevicesOf(t, devs), GPULayers: -1})
	require.NoError(t, err)
	assert.Len(t, rpcGreedyTokens(t, m, 4), 4)
	require.NoError(t, m.Close())

	cancel()
	select {
	case err := <-served:
		assert.ErrorIs(t, err, context.Canceled)
	case <-time.After(30 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
	assert.NoError(t, w.Close())
	_, err = net.DialTimeout("tcp", w.Addr(), time.Second)
	assert.Error(t, err, "the listener is closed")
}

// A client that vanishes in the middle of a reply (here a 64 MiB GET_TENSOR) leaves the
// worker serving: the write to the gone client fails, the worker does not die of SIGPIPE.
func TestRPCWorkerSurvivesVanishingClient(t *testing.T) {
	w := startRPCWorker(t)
	le := binary.LittleEndian
	for round := range 2 {
		c, err := net.Dial("tcp", w.addr)
		require.NoError(t, err)
		call := func(cmd byte, body []byte, want uint64) []byte {
			req := rpcwire.Request{Cmd: cmd, Size: uint64(len(body))}
			_, err := c.Write(append(req.Header(), body...))
			require.NoError(t, err)
			reply := make([]byte, 8+want)
			_, err = io.ReadFull(c, reply)
			require.NoError(t, err)
			require.Equal(t, want, le.Uint64(reply), "reply size to %s", rpcwire.CmdName(cmd))
			return reply[8:]
		}
		call(rpcwire.CmdHello, make([]byte, rpcwire.CapsSize), rpcwire.HelloReplySize)
		const size = 64 << 20
		ptr := le.Uint64(call(rpcwire.CmdAllocBuffer, le.AppendUint64(le.AppendUint32(nil, 0), size), 16))
		require.NotZero(t, ptr)
		base := le.Uint64(call(rpcwire.CmdBufferGetBase, le.AppendUint64(nil, ptr), 8))
		tensor := rpcwire.Tensor{Type: gguf.TypeF32, Buffer: ptr, Data: base, Ne: [4]uint32{size / 4, 1, 1, 1}, Nb: [4]uint32{4, size, size, size}}
		req := le.AppendUint64(le.AppendUint64(tensor.Append(nil), 0), size) // tensor, offset, size
		hdr := rpcwire.Request{Cmd: rpcwire.CmdGetTensor, Size: uint64(len(req))}
		_, err = c.Write(append(hdr.Header(), req...))
		require.NoError(t, err)
		var size8 [8]byte
		_, err = io.ReadFull(c, size8[:])
		require.NoError(t, err, "the worker accepted the request")
		assert.Equal(t, uint64(size), le.Uint64(size8[:]))
		c.Close()
		_, err = rpcwire.Handshake(t.Context(), w.addr, 30*time.Second)
		require.NoError(t, err, "round %d: %s", round, w.output())
	}
	select {
	case <-w.exited:
		t.Fatalf("the worker died: %s", w.output())
	default:
	}
}
