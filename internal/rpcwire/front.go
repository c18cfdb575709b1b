package rpcwire

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"sync"
)

// Front stands before llama.cpp's RPC server in a worker and relays its clients to it,
// applying a memory limit per device: allocations beyond it fail, and the device memory
// clients see is at most the limit (they split layers by it).
type Front struct {
	memory  uint64   // per device; 0: none
	devices []string // names, for the log
	log     *slog.Logger

	mu        sync.Mutex
	allocated []uint64 // bytes allocated per device by the client being served
}

// NewFront makes the front of a worker serving devices (their names) with memory bytes
// each (0: all they have); log (nil: silent) gets a line per refused allocation.
func NewFront(memory uint64, devices []string, log *slog.Logger) *Front {
	return &Front{memory: memory, devices: devices, log: log, allocated: make([]uint64, len(devices))}
}

// Serve relays one client c to inner, llama.cpp's server, until either end closes.
// Clients are served one at a time, as llama.cpp's server does: the caller serialises.
func (w *Front) Serve(c, inner net.Conn) {
	// Buffers of this client: llama.cpp's server frees them all when the client leaves.
	buffers := map[uint64]frontBuffer{}
	defer func() {
		w.mu.Lock()
		for _, b := range buffers {
			w.allocated[b.dev] -= b.size
		}
		w.mu.Unlock()
	}()
	f := &frontSession{
		w: w, client: bufio.NewReaderSize(c, 64<<10), out: bufio.NewWriterSize(c, 64<<10),
		innerR: bufio.NewReaderSize(inner, 64<<10), innerW: bufio.NewWriterSize(inner, 64<<10),
		buffers: buffers, buf: make([]byte, MaxBufferedPacket),
	}
	for {
		req, err := ReadRequest(f.client, f.buf)
		if err != nil {
			return
		}
		if !req.WellFormed() {
			// Not a request of this protocol: llama.cpp's server answers as it does (it
			// drops the connection); from here on bytes pass unchanged.
			f.innerW.Write(req.Header())
			f.innerW.Write(req.Body)
			f.innerW.Flush()
			go io.Copy(inner, f.client)
			io.Copy(c, f.innerR)
			return
		}
		if err := f.handle(&req); err != nil {
			return
		}
	}
}

type frontBuffer struct {
	dev  int
	size uint64
}

// frontSession relays one client of a Front.
type frontSession struct {
	w       *Front
	client  *bufio.Reader
	out     *bufio.Writer
	innerR  *bufio.Reader
	innerW  *bufio.Writer
	buffers map[uint64]frontBuffer
	buf     []byte
	reply   [MaxBufferedPacket]byte
}

func (f *frontSession) handle(req *Request) error {
	le := binary.LittleEndian
	w := f.w
	switch req.Cmd {
	case CmdHello:
		clear(req.Body) // plain TCP: no transport upgrade
	case CmdAllocBuffer:
		dev, size := le.Uint32(req.Body), le.Uint64(req.Body[4:])
		if w.memory > 0 && int(dev) < len(w.allocated) {
			w.mu.Lock()
			used := w.allocated[dev]
			w.mu.Unlock()
			if size > w.memory || used+size > w.memory {
				w.logf(slog.LevelWarn, "RPC worker: allocation refused: over the memory offered",
					"device", w.devices[dev], "request_MiB", size>>20, "used_MiB", used>>20, "offered_MiB", w.memory>>20)
				var reply [8 + 16]byte // remote_ptr 0: the allocation failed
				le.PutUint64(reply[:], 16)
				f.out.Write(reply[:])
				return f.out.Flush()
			}
		}
	case CmdFreeBuffer:
		if b, ok := f.buffers[le.Uint64(req.Body)]; ok {
			delete(f.buffers, le.Uint64(req.Body))
			w.mu.Lock()
			w.allocated[b.dev] -= b.size
			w.mu.Unlock()
		}
	}
	// Forward the request.
	f.innerW.Write(req.Header())
	f.innerW.Write(req.Body)
	if req.Streamed() {
		if _, err := io.CopyN(f.innerW, f.client, int64(req.Size)); err != nil {
			return err
		}
	}
	noReply := !HasReply(req.Cmd)
	if !noReply || f.client.Buffered() == 0 { // requests in a row go in one write
		if err := f.innerW.Flush(); err != nil {
			return err
		}
	}
	if noReply {
		return nil
	}
	// Relay the reply, adjusting what the memory limit changes.
	var hdr [8]byte
	if _, err := io.ReadFull(f.innerR, hdr[:]); err != nil {
		return err
	}
	n := le.Uint64(hdr[:])
	if _, err := f.out.Write(hdr[:]); err != nil {
		return err
	}
	if n > MaxBufferedPacket {
		if _, err := io.CopyN(f.out, f.innerR, int64(n)); err != nil {
			return err
		}
		return f.out.Flush()
	}
	reply := f.reply[:n]
	if _, err := io.ReadFull(f.innerR, reply); err != nil {
		return err
	}
	switch {
	case req.Cmd == CmdHello && n == HelloReplySize:
		clear(reply[4:])
	case req.Cmd == CmdAllocBuffer && n == 16:
		dev := int(le.Uint32(req.Body))
		if ptr := le.Uint64(reply); ptr != 0 && dev < len(w.allocated) {
			size := le.Uint64(reply[8:])
			f.buffers[ptr] = frontBuffer{dev, size}
			w.mu.Lock()
			w.allocated[dev] += size
			w.mu.Unlock()
		}
	case req.Cmd == CmdGetDeviceMemory && n == 16 && w.memory > 0:
		dev := int(le.Uint32(req.Body))
		if dev < len(w.allocated) {
			free, total := le.Uint64(reply), le.Uint64(reply[8:])
			w.mu.Lock()
			left := w.memory - min(w.memory, w.allocated[dev])
			w.mu.Unlock()
			le.PutUint64(reply, min(free, left))
			le.PutUint64(reply[8:], min(total, w.memory))
		}
	}
	if _, err := f.out.Write(reply); err != nil {
		return err
	}
	return f.out.Flush()
}

func (w *Front) logf(level slog.Level, msg string, args ...any) {
	if w.log != nil {
		w.log.Log(context.Background(), level, msg, args...)
	}
}
