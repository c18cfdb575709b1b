package rpcwire

import (
	"bytes"
	"encoding/binary"
	"github.com/llamago/llamago/llama/gguf"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The relay without llama.cpp: a scripted worker on one side, the test speaking as
// llama.cpp's RPC client on the other. Whatever the worker does, every request gets a
// reply of exactly the size llama.cpp expects (a wrong size or a closed connection would
// make it abort the process).

// fakeWorker answers requests with script until script returns false (then it closes
// the connection).
func fakeWorker(t *testing.T, script func(cmd byte, body []byte, c net.Conn) bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				for {
					var hdr [9]byte
					if _, err := io.ReadFull(c, hdr[:]); err != nil {
						return
					}
					body := make([]byte, binary.LittleEndian.Uint64(hdr[1:]))
					if _, err := io.ReadFull(c, body); err != nil {
						return
					}
					if !script(hdr[0], body, c) {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func writeReply(c net.Conn, payload []byte) {
	var hdr [8]byte
	binary.LittleEndian.PutUint64(hdr[:], uint64(len(payload)))
	c.Write(append(hdr[:], payload...))
}

// workerReplies answers HELLO, DEVICE_COUNT, GET_ALIGNMENT and GET_TENSOR (0xab bytes) as a
// worker of this protocol does.
func workerReplies(cmd byte, body []byte, c net.Conn) {
	le := binary.LittleEndian
	switch cmd {
	case CmdHello:
		reply := make([]byte, HelloReplySize)
		reply[0], reply[1], reply[2] = ProtoMajor, ProtoMinor, ProtoPatch
		reply[4] = 7 // RDMA caps the relay must hide
		writeReply(c, reply)
	case CmdDeviceCount:
		writeReply(c, le.AppendUint32(nil, 2))
	case CmdGetAlignment:
		writeReply(c, le.AppendUint64(nil, 32))
	case CmdGetTensor:
		writeReply(c, bytes.Repeat([]byte{0xab}, int(le.Uint64(body[TensorSize+8:]))))
	}
}

// rpcClient speaks as llama.cpp's client through a relay.
type rpcClient struct {
	t *testing.T
	c net.Conn
}

func dialRelay(t *testing.T, r *Relay) *rpcClient {
	c, err := net.Dial("tcp", r.Addr())
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return &rpcClient{t, c}
}

// call sends a request and reads its reply (want bytes, none when 0).
func (rc *rpcClient) call(cmd byte, body []byte, want int) []byte {
	req := Request{Cmd: cmd, Size: uint64(len(body))}
	_, err := rc.c.Write(append(req.Header(), body...))
	require.NoError(rc.t, err)
	if want == 0 {
		return nil
	}
	rc.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var hdr [8]byte
	_, err = io.ReadFull(rc.c, hdr[:])
	require.NoError(rc.t, err)
	require.Equal(rc.t, uint64(want), binary.LittleEndian.Uint64(hdr[:]), "reply size to %s", CmdName(cmd))
	reply := make([]byte, want)
	_, err = io.ReadFull(rc.c, reply)
	require.NoError(rc.t, err)
	return reply
}

func getTensorReq(size uint64) []byte {
	b := make([]byte, getTensorReqSize)
	binary.LittleEndian.PutUint64(b[TensorSize+8:], size)
	return b
}

// tensorReq serializes a tensor of type typ and shape ne, contiguous.
func tensorReq(typ gguf.TensorType, ne [4]uint32) []byte {
	t := Tensor{Type: typ, Ne: ne}
	t.Nb[0] = uint32(typ.BlockBytes())
	t.Nb[1] = t.Nb[0] * ne[0] / uint32(typ.BlockSize())
	t.Nb[2] = t.Nb[1] * ne[1]
	t.Nb[3] = t.Nb[2] * ne[2]
	return t.Append(nil)
}

func TestRPCRelayWorkerDies(t *testing.T) {
	le := binary.LittleEndian
	addr := fakeWorker(t, func(cmd byte, body []byte, c net.Conn) bool {
		if cmd == CmdGraphCompute {
			return false // the worker dies computing
		}
		workerReplies(cmd, body, c)
		return true
	})
	r, err := NewRelay(addr, 5*time.Second, 0, nil)
	require.NoError(t, err)
	defer r.Close()
	c := dialRelay(t, r)

	hello := c.call(CmdHello, make([]byte, CapsSize), HelloReplySize)
	assert.Equal(t, []byte{ProtoMajor, ProtoMinor, ProtoPatch}, hello[:3])
	assert.Equal(t, make([]byte, CapsSize), hello[4:], "no transport upgrade through the relay")
	assert.Equal(t, uint32(2), le.Uint32(c.call(CmdDeviceCount, nil, 4)))
	assert.Equal(t, uint64(32), le.Uint64(c.call(CmdGetAlignment, le.AppendUint32(nil, 1), 8)))
	assert.Equal(t, bytes.Repeat([]byte{0xab}, 100), c.call(CmdGetTensor, getTensorReq(100), 100))
	big := c.call(CmdGetTensor, getTensorReq(200<<10), 200<<10) // streamed
	assert.Equal(t, bytes.Repeat([]byte{0xab}, 200<<10), big)
	require.NoError(t, r.Err())

	c.call(CmdGraphCompute, make([]byte, 100<<10), 0)
	// From here on the relay answers: zeros, failed allocations, what it learned before.
	assert.Equal(t, make([]byte, 300<<10), c.call(CmdGetTensor, getTensorReq(300<<10), 300<<10))
	assert.Equal(t, make([]byte, 16), c.call(CmdAllocBuffer, make([]byte, 12), 16))
	assert.Equal(t, uint64(32), le.Uint64(c.call(CmdGetAlignment, le.AppendUint32(nil, 1), 8)))
	assert.Equal(t, uint64(1<<64-1), le.Uint64(c.call(CmdGetMaxSize, le.AppendUint32(nil, 0), 8)))
	assert.NotZero(t, le.Uint64(c.call(CmdBufferGetBase, le.AppendUint64(nil, 42), 8)))
	assert.Equal(t, make([]byte, 16), c.call(CmdGetDeviceMemory, le.AppendUint32(nil, 0), 16))
	assert.Equal(t, []byte{0}, c.call(CmdSetTensorHash, make([]byte, TensorSize+16), 1))
	assert.Equal(t, []byte{0}, c.call(CmdCopyTensor, make([]byte, 2*TensorSize), 1))
	c.call(CmdSetTensor, make([]byte, 1<<20), 0)
	c.call(CmdFreeBuffer, make([]byte, 8), 0)
	// GET_ALLOC_SIZE is ggml_nbytes: F32 10x3 = 120 bytes; Q8_0 64x2 = 136, plus the
	// padding of quantized rows to 512 elements some backends need (448 elements: 476).
	allocSize := func(tensor []byte) uint64 {
		return le.Uint64(c.call(CmdGetAllocSize, append(make([]byte, 4), append(tensor, make([]byte, allocSizeReqSize-4-TensorSize)...)...), 8))
	}
	assert.Equal(t, uint64(120), allocSize(tensorReq(gguf.TypeF32, [4]uint32{10, 3, 1, 1})))
	assert.Equal(t, uint64(136+476), allocSize(tensorReq(gguf.TypeQ8_0, [4]uint32{64, 2, 1, 1})))

	err = r.Err()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "closed the connection")

	// A new connection to a dead relay is answered by the relay alone.
	c2 := dialRelay(t, r)
	hello = c2.call(CmdHello, make([]byte, CapsSize), HelloReplySize)
	assert.Equal(t, byte(ProtoMajor), hello[0])
	assert.Equal(t, uint32(2), le.Uint32(c2.call(CmdDeviceCount, nil, 4)), "the count the worker told before")
}

func TestRPCRelayMalformedReply(t *testing.T) {
	addr := fakeWorker(t, func(cmd byte, body []byte, c net.Conn) bool {
		if cmd == CmdGetAlignment {
			writeReply(c, []byte{1, 2, 3, 4}) // 4 bytes instead of 8
			return true
		}
		workerReplies(cmd, body, c)
		return true
	})
	r, err := NewRelay(addr, 5*time.Second, 1, nil)
	require.NoError(t, err)
	defer r.Close()
	c := dialRelay(t, r)
	c.call(CmdHello, make([]byte, CapsSize), HelloReplySize)
	assert.Equal(t, uint64(4096), binary.LittleEndian.Uint64(c.call(CmdGetAlignment, make([]byte, 4), 8)))
	assert.ErrorContains(t, r.Err(), "malformed reply")
}

func TestRPCRelayVersionMismatch(t *testing.T) {
	addr := fakeWorker(t, func(cmd byte, body []byte, c net.Conn) bool {
		if cmd == CmdHello {
			reply := make([]byte, HelloReplySize)
			reply[0] = ProtoMajor + 1
			writeReply(c, reply)
		}
		return true
	})
	r, err := NewRelay(addr, 5*time.Second, 1, nil)
	require.NoError(t, err)
	defer r.Close()
	hello := dialRelay(t, r).call(CmdHello, make([]byte, CapsSize), HelloReplySize)
	assert.Equal(t, byte(ProtoMajor), hello[0], "llama.cpp aborts on another version: the relay answers")
	assert.ErrorContains(t, r.Err(), "protocol")
	_, err = Handshake(t.Context(), addr, 5*time.Second)
	assert.ErrorContains(t, err, "protocol")
}

func TestRPCRelayHungWorker(t *testing.T) {
	addr := fakeWorker(t, func(cmd byte, body []byte, c net.Conn) bool {
		if cmd == CmdGetTensor {
			time.Sleep(time.Hour) // never answers
		}
		workerReplies(cmd, body, c)
		return true
	})
	const timeout = 300 * time.Millisecond
	r, err := NewRelay(addr, timeout, 1, nil)
	require.NoError(t, err)
	defer r.Close()
	c := dialRelay(t, r)
	c.call(CmdHello, make([]byte, CapsSize), HelloReplySize)
	start := time.Now()
	assert.Equal(t, make([]byte, 64), c.call(CmdGetTensor, getTensorReq(64), 64))
	assert.GreaterOrEqual(t, time.Since(start), timeout)
	assert.Less(t, time.Since(start), 5*time.Second)
	assert.ErrorIs(t, r.Err(), os.ErrDeadlineExceeded)
}

func TestRPCRelayWorkerDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	r, err := NewRelay(addr, 5*time.Second, 1, nil)
	require.NoError(t, err)
	defer r.Close()
	c := dialRelay(t, r)
	hello := c.call(CmdHello, make([]byte, CapsSize), HelloReplySize)
	assert.Equal(t, byte(ProtoMajor), hello[0])
	assert.ErrorContains(t, r.Err(), addr)
	_, err = Handshake(t.Context(), addr, 5*time.Second)
	assert.ErrorContains(t, err, "connect")
}
