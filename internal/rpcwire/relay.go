package rpcwire

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Relay stands between llama.cpp's RPC client and one worker. llama.cpp aborts the
// process when a worker cannot be reached, closes the connection or sends a malformed
// reply (GGML_ABORT in ggml-rpc.cpp), and it waits forever on a worker that hangs. So
// llama.cpp connects to this relay on a loopback port instead, and the relay talks to the
// worker with timeouts. The first failure is recorded and makes the relay dead for good:
// from then on it answers every request itself with a well-formed neutral reply (zeros,
// failed allocations), so llama.cpp never sees a broken connection and the calls in
// flight return; the binding then finds the failure (Err) and returns it as an error.
// A dead relay keeps listening, so that llama.cpp objects still holding its address can
// always reconnect (to fake answers); a worker that comes back gets a new relay.
type Relay struct {
	endpoint string        // the worker, host:port
	timeout  time.Duration // silence allowed from the worker while it owes bytes
	ln       net.Listener
	addr     string // the relay's loopback address: the endpoint llama.cpp knows
	onFail   func(error)

	failure atomic.Pointer[error] // set once, by the first failure

	mu        sync.Mutex
	devCount  uint32            // from the handshake, for fake DEVICE_COUNT replies
	alignment map[uint32]uint64 // per remote device, from real replies
	maxSize   map[uint32]uint64
	bases     map[uint64]uint64 // remote buffer -> its base address
}

// NewRelay starts a relay to endpoint on a fresh loopback port. timeout is the silence
// allowed from the worker while it owes bytes; devCount is what the handshake learned;
// onFail (may be nil) is called once, with the first failure.
func NewRelay(endpoint string, timeout time.Duration, devCount uint32, onFail func(error)) (*Relay, error) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("RPC relay for %s: %w", endpoint, err)
	}
	r := &Relay{
		endpoint: endpoint, timeout: timeout, ln: ln, addr: ln.Addr().String(), devCount: devCount, onFail: onFail,
		alignment: map[uint32]uint64{}, maxSize: map[uint32]uint64{}, bases: map[uint64]uint64{},
	}
	go r.acceptLoop()
	return r, nil
}

func (r *Relay) acceptLoop() {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // e.g. out of file descriptors: retry
			continue
		}
		go r.serve(c)
	}
}

// Endpoint is the worker's address.
func (r *Relay) Endpoint() string { return r.endpoint }

// Addr is the relay's loopback address, the endpoint to give llama.cpp.
func (r *Relay) Addr() string { return r.addr }

// Close stops listening (tests only: llama.cpp may hold the address for the process's life).
func (r *Relay) Close() { r.ln.Close() }

// Fail records the first failure and returns it; the relay answers everything itself
// from then on.
func (r *Relay) Fail(err error) error {
	if r.failure.CompareAndSwap(nil, &err) {
		if r.onFail != nil {
			r.onFail(err)
		}
		return err
	}
	return *r.failure.Load()
}

// Err is the relay's first failure, nil while it relays.
func (r *Relay) Err() error {
	if e := r.failure.Load(); e != nil {
		return *e
	}
	return nil
}

// idleConn applies the relay timeout to every read and write: the worker may take long
// in total (a large upload, a long graph computation) but never stay silent that long.
type idleConn struct {
	net.Conn
	timeout time.Duration
}

func (c idleConn) Read(p []byte) (int, error) {
	c.SetReadDeadline(time.Now().Add(c.timeout))
	return c.Conn.Read(p)
}

func (c idleConn) Write(p []byte) (int, error) {
	c.SetWriteDeadline(time.Now().Add(c.timeout))
	return c.Conn.Write(p)
}

// describeIOError turns a network error of the worker connection into words.
func (r *Relay) describeIOError(op string, err error) error {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("%s: the worker sent nothing for %v (hung or overloaded): %w", op, r.timeout, err)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.EPIPE),
		errors.Is(err, syscall.ECONNRESET):
		return fmt.Errorf("%s: the worker closed the connection (it exited or crashed): %w", op, err)
	default:
		return fmt.Errorf("%s: %w", op, err)
	}
}

// relaySession is one connection of llama.cpp's RPC client, relayed to one worker connection.
type relaySession struct {
	r      *Relay
	client *bufio.Reader
	out    *bufio.Writer // to the client
	up     net.Conn      // nil once the relay is dead
	upR    *bufio.Reader
	upW    *bufio.Writer
	buf    []byte // request payloads
	reply  []byte // small replies
	chunk  []byte // streaming
}

func (r *Relay) serve(client net.Conn) {
	defer client.Close()
	s := &relaySession{
		r: r, client: bufio.NewReaderSize(client, 64<<10), out: bufio.NewWriterSize(client, 64<<10),
		buf: make([]byte, MaxBufferedPacket), reply: make([]byte, MaxBufferedPacket), chunk: make([]byte, 64<<10),
	}
	if r.failure.Load() == nil {
		ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", r.endpoint)
		cancel()
		if err != nil {
			r.Fail(fmt.Errorf("connect: %w", err))
		} else {
			s.up = c
			ic := idleConn{c, r.timeout}
			s.upR, s.upW = bufio.NewReaderSize(ic, 64<<10), bufio.NewWriterSize(ic, 64<<10)
		}
	}
	defer s.dropUpstream()
	for {
		req, err := ReadRequest(s.client, s.buf)
		if err != nil {
			return // the client closed the connection (or this process is exiting)
		}
		if s.up != nil && r.failure.Load() != nil {
			s.dropUpstream() // another session of this relay failed: the worker's state is gone
		}
		if err := s.handle(&req); err != nil {
			return // the client connection broke
		}
	}
}

func (s *relaySession) dropUpstream() {
	if s.up != nil {
		s.up.Close()
		s.up, s.upR, s.upW = nil, nil, nil
	}
}

// failUpstream records a worker failure and continues without it.
func (s *relaySession) failUpstream(op string, err error) {
	s.r.Fail(s.r.describeIOError(op, err))
	s.dropUpstream()
}

// handle relays one request and its reply; errors are of the client connection only.
func (s *relaySession) handle(req *Request) error {
	name := CmdName(req.Cmd)
	if s.up != nil && !req.WellFormed() {
		// llama.cpp's client sends only well-formed requests: a mismatch means the
		// relay does not know this protocol, and a worker would drop the connection.
		s.failUpstream("send "+name, fmt.Errorf("unexpected request of %d bytes (protocol mismatch)", req.Size))
	}
	switch {
	case req.Cmd == CmdHello && len(req.Body) == CapsSize:
		clear(req.Body) // no transport upgrade (RDMA) behind the relay's back
	case req.Cmd == CmdFreeBuffer && len(req.Body) == 8:
		s.r.mu.Lock()
		delete(s.r.bases, binary.LittleEndian.Uint64(req.Body))
		s.r.mu.Unlock()
	}
	// Forward the request. A streamed payload is read from the client in any case, to
	// stay in step with it.
	if s.up != nil {
		if _, err := s.upW.Write(req.Header()); err != nil {
			s.failUpstream("send "+name, err)
		} else if _, err := s.upW.Write(req.Body); err != nil {
			s.failUpstream("send "+name, err)
		}
	}
	if req.Streamed() {
		for left := req.Size; left > 0; {
			n := int(min(left, uint64(len(s.chunk))))
			if _, err := io.ReadFull(s.client, s.chunk[:n]); err != nil {
				return err
			}
			left -= uint64(n)
			if s.up != nil {
				if _, err := s.upW.Write(s.chunk[:n]); err != nil {
					s.failUpstream("send "+name, err)
				}
			}
		}
	}
	noReply := req.Cmd >= CmdCount || replies[req.Cmd] == 0
	// Requests without a reply that llama.cpp sent in a row (inputs, a graph, ...) go to
	// the worker in one write: flush when a reply is due or the client paused.
	if s.up != nil && (!noReply || s.client.Buffered() == 0) {
		if err := s.upW.Flush(); err != nil {
			s.failUpstream("send "+name, err)
		}
	}
	if noReply {
		return nil
	}
	want := req.ReplySize()
	if want <= uint64(len(s.reply)) {
		return s.smallReply(req, name, s.reply[:want])
	}
	return s.streamReply(name, want)
}

// smallReply relays (or makes up) a reply small enough to inspect.
func (s *relaySession) smallReply(req *Request, name string, reply []byte) error {
	var hdr [8]byte
	want := uint64(len(reply))
	ok := false
	if s.up != nil {
		if _, err := io.ReadFull(s.upR, hdr[:]); err != nil {
			s.failUpstream("reply to "+name, err)
		} else if got := binary.LittleEndian.Uint64(hdr[:]); got != want {
			s.failUpstream("reply to "+name, fmt.Errorf("malformed reply: %d bytes, want %d", got, want))
		} else if _, err := io.ReadFull(s.upR, reply); err != nil {
			s.failUpstream("reply to "+name, err)
		} else if err := s.inspect(req, reply); err != nil {
			s.failUpstream("reply to "+name, err)
		} else {
			ok = true
		}
	}
	if !ok {
		s.fakeReply(req, reply)
	}
	binary.LittleEndian.PutUint64(hdr[:], want)
	s.out.Write(hdr[:])
	s.out.Write(reply)
	return s.out.Flush()
}

// inspect checks and remembers what a real reply says.
func (s *relaySession) inspect(req *Request, reply []byte) error {
	r := s.r
	switch req.Cmd {
	case CmdHello:
		if reply[0] != ProtoMajor || reply[1] > ProtoMinor {
			return fmt.Errorf("the worker speaks RPC protocol %d.%d.%d, this build %d.%d.%d: use the same llama.cpp release on both sides",
				reply[0], reply[1], reply[2], ProtoMajor, ProtoMinor, ProtoPatch)
		}
		clear(reply[4:]) // no transport upgrade
	case CmdDeviceCount:
		r.mu.Lock()
		r.devCount = binary.LittleEndian.Uint32(reply)
		r.mu.Unlock()
	case CmdGetAlignment, CmdGetMaxSize:
		dev := binary.LittleEndian.Uint32(req.Body)
		v := binary.LittleEndian.Uint64(reply)
		r.mu.Lock()
		if req.Cmd == CmdGetAlignment {
			r.alignment[dev] = v
		} else {
			r.maxSize[dev] = v
		}
		r.mu.Unlock()
	case CmdBufferGetBase:
		r.mu.Lock()
		r.bases[binary.LittleEndian.Uint64(req.Body)] = binary.LittleEndian.Uint64(reply)
		r.mu.Unlock()
	}
	return nil
}

// fakeReply fills reply with a well-formed neutral answer: what llama.cpp gets once the
// worker is gone. Allocations fail (llama.cpp handles that), reads return zeros, and the
// constants llama.cpp caches are the worker's own where known.
func (s *relaySession) fakeReply(req *Request, reply []byte) {
	r := s.r
	clear(reply)
	r.mu.Lock()
	defer r.mu.Unlock()
	le := binary.LittleEndian
	switch req.Cmd {
	case CmdHello:
		reply[0], reply[1], reply[2] = ProtoMajor, ProtoMinor, ProtoPatch
	case CmdDeviceCount:
		le.PutUint32(reply, max(r.devCount, 1))
	case CmdGetAlignment:
		a, ok := r.alignment[le.Uint32(req.Body)]
		if !ok {
			a = 4096
		}
		le.PutUint64(reply, a)
	case CmdGetMaxSize:
		m, ok := r.maxSize[le.Uint32(req.Body)]
		if !ok {
			m = 1<<64 - 1
		}
		le.PutUint64(reply, m)
	case CmdBufferGetBase:
		b, ok := r.bases[le.Uint64(req.Body)]
		if !ok {
			b = 1 << 32 // any non-null address: llama.cpp only computes offsets from it
		}
		le.PutUint64(reply, b)
	case CmdGetAllocSize:
		le.PutUint64(reply, DecodeTensor(req.Body[4:]).Nbytes())
	}
	// ALLOC_BUFFER: remote_ptr 0 = allocation failed; SET_TENSOR_HASH, COPY_TENSOR: 0 = not
	// done (llama.cpp falls back to other commands); GET_DEVICE_MEMORY: 0 free of 0.
}

// streamReply relays a large reply (GET_TENSOR), completing it with zeros when the worker fails.
func (s *relaySession) streamReply(name string, want uint64) error {
	var hdr [8]byte
	binary.LittleEndian.PutUint64(hdr[:], want)
	if s.up != nil {
		if _, err := io.ReadFull(s.upR, hdr[:]); err != nil {
			s.failUpstream("reply to "+name, err)
		} else if got := binary.LittleEndian.Uint64(hdr[:]); got != want {
			s.failUpstream("reply to "+name, fmt.Errorf("malformed reply: %d bytes, want %d", got, want))
		}
		binary.LittleEndian.PutUint64(hdr[:], want)
	}
	if _, err := s.out.Write(hdr[:]); err != nil {
		return err
	}
	for left := want; left > 0; {
		n := int(min(left, uint64(len(s.chunk))))
		if s.up != nil {
			if _, err := io.ReadFull(s.upR, s.chunk[:n]); err != nil {
				s.failUpstream("reply to "+name, err)
			}
		}
		if s.up == nil {
			clear(s.chunk[:n])
		}
		if _, err := s.out.Write(s.chunk[:n]); err != nil {
			return err
		}
		left -= uint64(n)
	}
	return s.out.Flush()
}

// Handshake connects to a worker directly (not through a relay), checks its protocol
// version and returns how many devices it serves. It is how a worker is found alive before
// llama.cpp (which would abort) is let near it.
func Handshake(ctx context.Context, endpoint string, timeout time.Duration) (uint32, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", endpoint)
	if err != nil {
		return 0, fmt.Errorf("connect: %w", err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	fail := func(op string, err error) (uint32, error) {
		if ctx.Err() != nil && errors.Is(err, os.ErrDeadlineExceeded) {
			if cause := context.Cause(ctx); !errors.Is(cause, context.DeadlineExceeded) {
				return 0, fmt.Errorf("%s: %w", op, cause)
			}
			err = fmt.Errorf("no answer within %v (hung, or busy serving another client): %w", timeout, os.ErrDeadlineExceeded)
		}
		return 0, fmt.Errorf("%s: %w", op, err)
	}
	var msg [9 + CapsSize]byte
	msg[0] = CmdHello
	binary.LittleEndian.PutUint64(msg[1:], CapsSize)
	if _, err := c.Write(msg[:]); err != nil {
		return fail("handshake", err)
	}
	var reply [8 + HelloReplySize]byte
	if _, err := io.ReadFull(c, reply[:]); err != nil {
		return fail("handshake", err)
	}
	if n := binary.LittleEndian.Uint64(reply[:]); n != HelloReplySize {
		return 0, fmt.Errorf("handshake: not an RPC worker of a compatible llama.cpp (%d-byte reply)", n)
	}
	if v := reply[8:]; v[0] != ProtoMajor || v[1] > ProtoMinor {
		return 0, fmt.Errorf("handshake: the worker speaks RPC protocol %d.%d.%d, this build %d.%d.%d: use the same llama.cpp release on both sides",
			v[0], v[1], v[2], ProtoMajor, ProtoMinor, ProtoPatch)
	}
	var count [9]byte
	count[0] = CmdDeviceCount
	if _, err := c.Write(count[:]); err != nil {
		return fail("device count", err)
	}
	var cr [12]byte
	if _, err := io.ReadFull(c, cr[:]); err != nil {
		return fail("device count", err)
	}
	if binary.LittleEndian.Uint64(cr[:]) != 4 {
		return 0, errors.New("device count: malformed reply")
	}
	n := binary.LittleEndian.Uint32(cr[8:])
	if n == 0 {
		return 0, errors.New("the worker serves no device")
	}
	return n, nil
}
