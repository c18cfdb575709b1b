package llama

// RPC: layers of a model on other machines. A worker process (examples/rpc-server, or
// ListenRPC) serves its local backend over TCP with llama.cpp's RPC protocol; AddRPCServer
// makes the worker's devices usable here, and ModelParams.Devices places layers on them.
// The rpc build tag links llama.cpp's RPC backend; without it these functions return
// ErrRPCUnavailable.
//
// Failures. llama.cpp's RPC client aborts the process when a worker cannot be reached,
// closes its connection or answers out of protocol, and waits forever for one that hangs.
// So llama.cpp never talks to a worker directly: it connects to a relay on a loopback
// port of this process (package internal/rpcwire), which talks to the worker with timeouts and, once
// the worker failed, answers llama.cpp itself with well-formed neutral replies. The
// decode (or load) in flight therefore returns, and the Go side turns the relay's
// recorded failure into an *RPCError: run in decode.go checks it before and after every
// decode of a model with remote layers, LoadModel after loading. No ggml thread is parked
// and nothing is leaked except the relay's listener, which stays open for the life of the
// process because llama.cpp keeps the relay's address. A worker that answers again gets
// a new relay (and new llama.cpp devices behind the same Device names) on the next load.

/*
#include "shim.h"
#include "ggml-backend.h"
*/
import "C"

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/llamago/llamago/internal/rpcwire"
)

// DefaultRPCTimeout is RPCServerParams.Timeout when zero.
const DefaultRPCTimeout = time.Minute

// rpcBackendName is Device.Backend of a remote device.
const rpcBackendName = "RPC"

// RPCServerParams configures AddRPCServer. A nil *RPCServerParams means the defaults.
type RPCServerParams struct {
	// Timeout bounds every wait for the worker: connecting, and each stretch of silence
	// while it owes a reply or must take data (a graph computation is one such wait, so
	// allow for the longest micro-batch the worker computes). A worker silent for longer
	// counts as failed. 0 = DefaultRPCTimeout.
	Timeout time.Duration
}

// RPCDevice is a device of an RPC worker.
type RPCDevice struct {
	// Device is what ModelParams.Devices takes. Its Backend is "RPC", Name is "RPC<n>"
	// (numbered in the order devices were added to this process), Description the
	// endpoint, Type DeviceGPU, and the memory is what the worker offers, read now.
	// Index is -1: remote devices are not in Devices(), and llama.cpp uses them only
	// where ModelParams.Devices names them.
	Device
	Endpoint string // the worker, host:port
	Remote   int    // the device's index on the worker
	// Err is set when the worker cannot be reached now (the memory is then 0): a model
	// loaded on it fails with this error.
	Err error
}

// RPCError reports a worker that could not be reached, stopped answering within the
// timeout, closed the connection or answered out of protocol. It matches ErrRPCWorker,
// and the cause (os.ErrDeadlineExceeded for a timeout; io.EOF, syscall.EPIPE or
// syscall.ECONNRESET for a worker that died; syscall.ECONNREFUSED for one that is down).
//
// A model with layers on a failed worker has lost them for good: every later decode of
// its contexts returns the same error at once. Close it (that does not wait for the
// failed worker) and load the model again once the worker is back.
type RPCError struct {
	Endpoint string
	Err      error
}

func (e *RPCError) Error() string   { return fmt.Sprintf("llama: RPC worker %s: %v", e.Endpoint, e.Err) }
func (e *RPCError) Unwrap() []error { return []error{ErrRPCWorker, e.Err} }

// rpcServer is a worker added with AddRPCServer. Its devices reach llama.cpp through the
// current relay; when that relay has failed and the worker answers again, a new relay
// (with new llama.cpp devices behind the same stable names) replaces it.
type rpcServer struct {
	endpoint string
	timeout  time.Duration
	names    []string // stable device names, as first registered
	relay    *rpcwire.Relay
	devs     []C.ggml_backend_dev_t // llama.cpp's devices behind relay
}

// rpcRegistry holds the workers added to this process. llama.cpp keeps what it learned
// about each relay address for the process's life, so relays are never removed.
var rpcRegistry = struct {
	sync.Mutex
	servers    []*rpcServer
	byEndpoint map[string]*rpcServer
	byName     map[string]rpcDeviceRef
	byDev      map[C.ggml_backend_dev_t]*rpcwire.Relay // the devices of every relay, failed ones included
}{byEndpoint: map[string]*rpcServer{}, byName: map[string]rpcDeviceRef{}, byDev: map[C.ggml_backend_dev_t]*rpcwire.Relay{}}

type rpcDeviceRef struct {
	s     *rpcServer
	index int
}

// AddRPCServer connects to an RPC worker at endpoint ("host:port", see examples/rpc-server)
// and makes its devices available for ModelParams.Devices; it returns them with their
// memory. Adding an endpoint again returns its devices (the first call's opts stay). A
// worker that cannot be reached, answers nothing within the timeout or speaks another
// protocol version gives an *RPCError naming the endpoint. Layers that ModelParams.GPULayers
// leaves out stay on the local CPU; TensorSplit spreads the rest over ModelParams.Devices,
// local and remote, in their order.
//
// The RPC protocol has no authentication or encryption: use it only on networks you trust.
func AddRPCServer(ctx context.Context, endpoint string, opts *RPCServerParams) ([]RPCDevice, error) {
	if !rpcBuilt {
		return nil, ErrRPCUnavailable
	}
	timeout := DefaultRPCTimeout
	if opts != nil && opts.Timeout != 0 {
		timeout = opts.Timeout
	}
	if timeout < 0 {
		return nil, invalidParam("RPC timeout %v is negative", timeout)
	}
	if err := checkRPCEndpoint(endpoint); err != nil {
		return nil, err
	}
	initBackend()
	rpcRegistry.Lock()
	defer rpcRegistry.Unlock()
	s := rpcRegistry.byEndpoint[endpoint]
	if s == nil {
		s = &rpcServer{endpoint: endpoint, timeout: timeout}
		if err := s.connect(ctx); err != nil {
			return nil, err
		}
		for i, d := range s.devs {
			name := C.GoString(C.ggml_backend_dev_name(d))
			if _, dup := rpcRegistry.byName[name]; dup {
				name = fmt.Sprintf("RPC[%s]%d", endpoint, i)
			}
			s.names = append(s.names, name)
			rpcRegistry.byName[name] = rpcDeviceRef{s, i}
		}
		rpcRegistry.servers = append(rpcRegistry.servers, s)
		rpcRegistry.byEndpoint[endpoint] = s
	}
	devs := s.list(ctx)
	for _, d := range devs {
		if d.Err != nil {
			return nil, d.Err
		}
	}
	return devs, nil
}

// RPCDevices lists the devices of the workers added with AddRPCServer, in the order they
// were added, with the memory each worker offers now. Each query waits at most the
// worker's timeout; an unreachable worker's devices are listed with Err set.
func RPCDevices() []RPCDevice {
	if !rpcBuilt {
		return nil
	}
	rpcRegistry.Lock()
	defer rpcRegistry.Unlock()
	var all []RPCDevice
	for _, s := range rpcRegistry.servers {
		all = append(all, s.list(context.Background())...)
	}
	return all
}

func checkRPCEndpoint(endpoint string) error {
	host, port, err := net.SplitHostPort(endpoint)
	if err != nil {
		return invalidParam("RPC endpoint %q: %v (want host:port)", endpoint, err)
	}
	if host == "" {
		return invalidParam("RPC endpoint %q: no host", endpoint)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return invalidParam("RPC endpoint %q: port must be 1..65535", endpoint)
	}
	return nil
}

// connect checks that the worker answers and puts a new relay, and llama.cpp devices
// behind it, in front of it. The registry is locked.
func (s *rpcServer) connect(ctx context.Context) error {
	count, err := rpcwire.Handshake(ctx, s.endpoint, s.timeout)
	if err != nil {
		return &RPCError{Endpoint: s.endpoint, Err: err}
	}
	if s.names != nil && int(count) != len(s.names) {
		return &RPCError{Endpoint: s.endpoint, Err: fmt.Errorf("the worker now serves %d devices, it served %d when added: restart this process to use it", count, len(s.names))}
	}
	r, err := rpcwire.NewRelay(s.endpoint, s.timeout, count, logRPCFailure(s.endpoint))
	if err != nil {
		return err
	}
	devs, err := rpcAddServer(r.Addr())
	if err == nil && r.Err() == nil {
		// llama.cpp asks each device's alignment and maximum buffer size once and keeps the
		// answers: ask now, while the worker is known to answer.
		for _, d := range devs {
			C.ggml_backend_dev_buffer_type(d)
		}
	}
	if err == nil && len(devs) != int(count) {
		err = fmt.Errorf("llama.cpp sees %d devices, the worker said %d", len(devs), count)
	}
	for _, d := range devs {
		rpcRegistry.byDev[d] = r
	}
	if err != nil {
		r.Fail(err) // the relay stays (llama.cpp may hold its address) but is not used again
	}
	if err := relayErr(r); err != nil {
		return err
	}
	s.relay, s.devs = r, devs
	return nil
}

// revive replaces a failed relay when the worker answers again. The registry is locked.
func (s *rpcServer) revive(ctx context.Context) error {
	if s.relay != nil && s.relay.Err() == nil {
		return nil
	}
	return s.connect(ctx)
}

// list describes the server's devices with their memory now. The registry is locked.
func (s *rpcServer) list(ctx context.Context) []RPCDevice {
	devs := make([]RPCDevice, len(s.names))
	err := s.revive(ctx)
	for i, name := range s.names {
		d := RPCDevice{
			Device:   Device{Index: -1, Name: name, Description: s.endpoint, Backend: rpcBackendName, Type: DeviceGPU},
			Endpoint: s.endpoint, Remote: i,
		}
		if err == nil {
			var free, total C.size_t
			C.ggml_backend_dev_memory(s.devs[i], &free, &total)
			if err = relayErr(s.relay); err == nil {
				d.FreeMemory, d.TotalMemory = uint64(free), uint64(total)
			}
		}
		d.Err = err
		devs[i] = d
	}
	return devs
}

// modelDevice resolves a Device of ModelParams.Devices: local ones by index, remote ones
// through their worker's current relay (reconnecting to a worker that failed before).
func modelDevice(d Device) (C.ggml_backend_dev_t, error) {
	if d.Backend != rpcBackendName {
		return deviceHandle(d)
	}
	rpcRegistry.Lock()
	defer rpcRegistry.Unlock()
	ref, ok := rpcRegistry.byName[d.Name]
	if !ok {
		return nil, invalidParam("device %q is not a device of a worker added with AddRPCServer", d.Name)
	}
	if err := ref.s.revive(context.Background()); err != nil {
		return nil, err
	}
	return ref.s.devs[ref.index], nil
}

// rpcUse is the set of relays a model's layers depend on (nil: none).
type rpcUse struct {
	relays []*rpcwire.Relay
}

// rpcUseOf finds the RPC devices among the devices of model parameters.
func rpcUseOf(cp *C.struct_llama_model_params) *rpcUse {
	if cp.devices == nil {
		return nil
	}
	rpcRegistry.Lock()
	defer rpcRegistry.Unlock()
	if len(rpcRegistry.byDev) == 0 {
		return nil
	}
	var u *rpcUse
	for _, d := range paramDevices(cp) {
		if r := rpcRegistry.byDev[d]; r != nil {
			if u == nil {
				u = &rpcUse{}
			}
			u.relays = append(u.relays, r)
		}
	}
	return u
}

// err returns the failure of a worker the model depends on, nil while all answer.
func (u *rpcUse) err() error {
	if u == nil {
		return nil
	}
	for _, r := range u.relays {
		if err := relayErr(r); err != nil {
			return err
		}
	}
	return nil
}

// relayErr is a relay's failure as an *RPCError, nil while it relays.
func relayErr(r *rpcwire.Relay) error {
	if err := r.Err(); err != nil {
		return &RPCError{Endpoint: r.Endpoint(), Err: err}
	}
	return nil
}

// logRPCFailure logs the first failure of the relay to endpoint.
func logRPCFailure(endpoint string) func(error) {
	return func(err error) {
		logGo(slog.LevelWarn, "llama: RPC worker failed", slog.String("endpoint", endpoint), slog.Any("error", err))
	}
}

// rpcSettle waits for the work queued on the workers by the last decode and returns the
// failure of any of them (a decode returns before RPC devices finish).
func (c *Context) rpcSettle() error {
	if c.model.rpc == nil {
		return nil
	}
	C.llama_synchronize(c.ptr)
	return c.model.rpc.err()
}
