package llama

/*
#include "ggml-backend.h"
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/llamago/llamago/internal/rpcwire"
)

// RPCWorkerParams configures ListenRPC. A nil *RPCWorkerParams means the defaults.
type RPCWorkerParams struct {
	// Host and Port to listen on. Host "" means 127.0.0.1: the RPC protocol has no
	// authentication or encryption, and anyone who can connect can use the devices and
	// read or write their memory. Port 0 picks a free port (see RPCWorker.Addr).
	Host string
	Port int
	// Devices to serve, from Devices(); nil means the GPUs, or the CPU when there is none.
	Devices []Device
	// Threads of the CPU device; 0 = PhysicalCores().
	Threads int
	// CacheDir, when set, keeps large tensors the clients upload in this directory, so a
	// client loading the same model again sends only their hashes. Created when missing.
	CacheDir string
	// Memory is the most bytes each device offers: clients see at most this much (they
	// split layers by it) and allocations beyond it fail. 0 = all the device has.
	Memory uint64
	// Logger receives a line per client connection and per refused allocation; nil = silent.
	Logger *slog.Logger
}

// RPCWorker serves this process's devices to RPC clients (AddRPCServer in other
// processes, or llama.cpp's --rpc). It runs llama.cpp's RPC server on a loopback port and
// relays to it the clients of its own listener, which applies the memory limit.
// Clients are served one at a time, as llama.cpp's server does.
type RPCWorker struct {
	ln      net.Listener
	inner   string // llama.cpp's server
	devs    []Device
	memory  uint64
	log     *slog.Logger
	turn    chan struct{} // one client at a time
	done    chan struct{}
	closeMu sync.Mutex
	conns   map[net.Conn]struct{}
	closed  bool
	front   *rpcwire.Front
}

// ListenRPC starts llama.cpp's RPC server for the devices of p and listens for clients;
// Serve accepts them. llama.cpp's server cannot be stopped: after Close it keeps a thread
// and its loopback port until the process exits, so run one worker per process (as
// examples/rpc-server does). It writes a banner and a line per connection to standard
// output. Without the rpc build tag ListenRPC returns ErrRPCUnavailable.
func ListenRPC(p *RPCWorkerParams) (*RPCWorker, error) {
	if !rpcBuilt {
		return nil, ErrRPCUnavailable
	}
	var params RPCWorkerParams
	if p != nil {
		params = *p
	}
	if params.Host == "" {
		params.Host = "127.0.0.1"
	}
	if params.Port < 0 || params.Port > 65535 {
		return nil, invalidParam("port %d out of range [0, 65535]", params.Port)
	}
	if params.Threads < 0 || params.Threads > 512 {
		return nil, invalidParam("threads %d out of range [0, 512]", params.Threads)
	}
	if params.Threads == 0 {
		params.Threads = PhysicalCores()
	}
	initBackend()
	devs := params.Devices
	if len(devs) == 0 {
		devs = defaultRPCWorkerDevices()
	}
	handles := make([]C.ggml_backend_dev_t, len(devs))
	for i, d := range devs {
		if d.Backend == rpcBackendName {
			return nil, invalidParam("device %s is itself remote: a worker serves local devices", d.Name)
		}
		h, err := deviceHandle(d)
		if err != nil {
			return nil, err
		}
		handles[i] = h
	}
	if len(handles) == 0 {
		return nil, invalidParam("no device to serve")
	}
	if params.CacheDir != "" {
		if err := os.MkdirAll(params.CacheDir, 0o755); err != nil {
			return nil, fmt.Errorf("llama: RPC cache directory: %w", err)
		}
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(params.Host, fmt.Sprint(params.Port)))
	if err != nil {
		return nil, fmt.Errorf("llama: RPC worker: %w", err)
	}
	inner, err := startRPCServer(params.CacheDir, params.Threads, handles)
	if err != nil {
		ln.Close()
		return nil, err
	}
	names := make([]string, len(devs))
	for i, d := range devs {
		names[i] = d.Name
	}
	w := &RPCWorker{
		ln: ln, inner: inner, devs: devs, memory: params.Memory, log: params.Logger,
		turn: make(chan struct{}, 1), done: make(chan struct{}), conns: map[net.Conn]struct{}{},
		front: rpcwire.NewFront(params.Memory, names, params.Logger),
	}
	return w, nil
}

// defaultRPCWorkerDevices are the GPUs, or the CPU when there is none (as llama.cpp's rpc-server).
func defaultRPCWorkerDevices() []Device {
	var gpus, cpus []Device
	for _, d := range Devices() {
		switch d.Type {
		case DeviceGPU, DeviceIntegrated:
			gpus = append(gpus, d)
		case DeviceCPU:
			cpus = append(cpus, d)
		}
	}
	if len(gpus) > 0 {
		return gpus
	}
	return cpus[:min(len(cpus), 1)]
}

// startRPCServer runs llama.cpp's server on a free loopback port and waits until it accepts.
func startRPCServer(cacheDir string, threads int, devs []C.ggml_backend_dev_t) (string, error) {
	probe, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("llama: RPC worker: %w", err)
	}
	addr := probe.Addr().String()
	probe.Close()
	exited := make(chan struct{})
	go func() {
		rpcStartServer(addr, cacheDir, threads, devs) // returns only when it could not start
		close(exited)
	}()
	// Creating the backends (a GPU's context) can take a while before the server listens.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return addr, nil
		}
		select {
		case <-exited:
			return "", errors.New("llama: RPC worker: llama.cpp's RPC server did not start (its output says why)")
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return "", errors.New("llama: RPC worker: llama.cpp's RPC server did not start listening within 2 minutes")
		}
	}
}

// Addr is the address the worker listens on (host:port), for clients' AddRPCServer.
func (w *RPCWorker) Addr() string { return w.ln.Addr().String() }

// Loopback reports whether only this machine can connect (the listener is on a loopback address).
func (w *RPCWorker) Loopback() bool {
	a, ok := w.ln.Addr().(*net.TCPAddr)
	return ok && a.IP.IsLoopback()
}

// Devices are the devices the worker serves, in the order clients see them.
func (w *RPCWorker) Devices() []Device { return append([]Device(nil), w.devs...) }

// Memory is the per-device limit (0: none).
func (w *RPCWorker) Memory() uint64 { return w.memory }

// Serve accepts clients until ctx is done or Close is called; it returns ctx's cause,
// or nil after Close.
func (w *RPCWorker) Serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { w.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := w.ln.Accept()
		if err != nil {
			select {
			case <-w.done:
				if ctx.Err() != nil {
					return context.Cause(ctx)
				}
				return nil
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			time.Sleep(10 * time.Millisecond) // e.g. out of file descriptors
			continue
		}
		if !w.track(c, true) {
			c.Close()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer w.track(c, false)
			defer c.Close()
			w.serveClient(c)
		}()
	}
}

// track adds (or removes) a client connection; false when the worker is closed.
func (w *RPCWorker) track(c net.Conn, add bool) bool {
	w.closeMu.Lock()
	defer w.closeMu.Unlock()
	if !add {
		delete(w.conns, c)
		return true
	}
	if w.closed {
		return false
	}
	w.conns[c] = struct{}{}
	return true
}

// Close stops listening and drops the clients. Calling it again is a no-op.
func (w *RPCWorker) Close() error {
	w.closeMu.Lock()
	defer w.closeMu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	close(w.done)
	w.ln.Close()
	for c := range w.conns {
		c.Close()
	}
	return nil
}

func (w *RPCWorker) logf(level slog.Level, msg string, args ...any) {
	if w.log != nil {
		w.log.Log(context.Background(), level, msg, args...)
	}
}

// serveClient relays one client to llama.cpp's server through the worker's front.
func (w *RPCWorker) serveClient(c net.Conn) {
	select {
	case w.turn <- struct{}{}:
	case <-w.done:
		return
	}
	defer func() { <-w.turn }()
	peer := c.RemoteAddr().String()
	w.logf(slog.LevelInfo, "RPC client connected", "client", peer)
	defer w.logf(slog.LevelInfo, "RPC client disconnected", "client", peer)

	inner, err := net.Dial("tcp", w.inner)
	if err != nil {
		w.logf(slog.LevelError, "RPC worker: cannot reach llama.cpp's server", "error", err)
		return
	}
	defer inner.Close()
	if !w.track(inner, true) { // Close drops both ends
		return
	}
	defer w.track(inner, false)
	w.front.Serve(c, inner)
}
