package llama

import (
	"bytes"
	"encoding/binary"
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
	case rpcCmdHello:
		reply := make([]byte, rpcHelloReplySize)
		reply[0], reply[1], reply[2] = rpcProtoMajor, rpcProtoMinor, rpcProtoPatch
		reply[4] = 7 // RDMA caps the relay must hide
		writeReply(c, reply)
	case rpcCmdDeviceCount:
		writeReply(c, le.AppendUint32(nil, 2))
	case rpcCmdGetAlignment:
		writeReply(c, le.AppendUint64(nil, 32))
	case rpcCmdGetTensor:
		writeReply(c, bytes.Repeat([]byte{0xab}, int(le.Uint64(body[rpcTensorSize+8:]))))
	}
}

// rpcClient speaks as llama.cpp's client through a relay.
type rpcClient struct {
	t *testing.T
	c net.Conn
}

func dialRelay(t *testing.T, r *rpcRelay) *rpcClient {
	c, err := net.Dial("tcp", r.addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return &rpcClient{t, c}
}

// call sends a request and reads its reply (want bytes, none when 0).
func (rc *rpcClient) call(cmd byte, body []byte, want int) []byte {
	req := rpcRequest{cmd: cmd, size: uint64(len(body))}
	_, err := rc.c.Write(append(req.header(), body...))
	require.NoError(rc.t, err)
	if want == 0 {
		return nil
	}
	rc.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var hdr [8]byte
	_, err = io.ReadFull(rc.c, hdr[:])
	require.NoError(rc.t, err)
	require.Equal(rc.t, uint64(want), binary.LittleEndian.Uint64(hdr[:]), "reply size to %s", rpcCmdName(cmd))
	reply := make([]byte, want)
	_, err = io.ReadFull(rc.c, reply)
	require.NoError(rc.t, err)
	return reply
}

func getTensorReq(size uint64) []byte {
	b := make([]byte, rpcGetTensorReqSize)
	binary.LittleEndian.PutUint64(b[rpcTensorSize+8:], size)
	return b
}

// tensorReq serializes a tensor of type typ (ggml_type) and shape ne, contiguous.
func tensorReq(typ uint32, typeSize, blck uint32, ne [4]uint32) []byte {
	b := make([]byte, rpcTensorSize)
	le := binary.LittleEndian
	le.PutUint32(b[rpcTensorType:], typ)
	nb := [4]uint32{typeSize, typeSize * ne[0] / blck}
	nb[2] = nb[1] * ne[1]
	nb[3] = nb[2] * ne[2]
	for i := range 4 {
		le.PutUint32(b[rpcTensorNe+4*i:], ne[i])
		le.PutUint32(b[rpcTensorNb+4*i:], nb[i])
	}
	return b
}

func TestRPCRelayWorkerDies(t *testing.T) {
	le := binary.LittleEndian
	addr := fakeWorker(t, func(cmd byte, body []byte, c net.Conn) bool {
		if cmd == rpcCmdGraphCompute {
			return false // the worker dies computing
		}
		workerReplies(cmd, body, c)
		return true
	})
	r, err := newRPCRelay(addr, 5*time.Second, 0)
	require.NoError(t, err)
	defer r.close()
	c := dialRelay(t, r)

	hello := c.call(rpcCmdHello, make([]byte, rpcCapsSize), rpcHelloReplySize)
	assert.Equal(t, []byte{rpcProtoMajor, rpcProtoMinor, rpcProtoPatch}, hello[:3])
	assert.Equal(t, make([]byte, rpcCapsSize), hello[4:], "no transport upgrade through the relay")
	assert.Equal(t, uint32(2), le.Uint32(c.call(rpcCmdDeviceCount, nil, 4)))
	assert.Equal(t, uint64(32), le.Uint64(c.call(rpcCmdGetAlignment, le.AppendUint32(nil, 1), 8)))
	assert.Equal(t, bytes.Repeat([]byte{0xab}, 100), c.call(rpcCmdGetTensor, getTensorReq(100), 100))
	big := c.call(rpcCmdGetTensor, getTensorReq(200<<10), 200<<10) // streamed
	assert.Equal(t, bytes.Repeat([]byte{0xab}, 200<<10), big)
	require.NoError(t, r.err())

	c.call(rpcCmdGraphCompute, make([]byte, 100<<10), 0)
	// From here on the relay answers: zeros, failed allocations, what it learned before.
	assert.Equal(t, make([]byte, 300<<10), c.call(rpcCmdGetTensor, getTensorReq(300<<10), 300<<10))
	assert.Equal(t, make([]byte, 16), c.call(rpcCmdAllocBuffer, make([]byte, 12), 16))
	assert.Equal(t, uint64(32), le.Uint64(c.call(rpcCmdGetAlignment, le.AppendUint32(nil, 1), 8)))
	assert.Equal(t, uint64(1<<64-1), le.Uint64(c.call(rpcCmdGetMaxSize, le.AppendUint32(nil, 0), 8)))
	assert.NotZero(t, le.Uint64(c.call(rpcCmdBufferGetBase, le.AppendUint64(nil, 42), 8)))
	assert.Equal(t, make([]byte, 16), c.call(rpcCmdGetDeviceMemory, le.AppendUint32(nil, 0), 16))
	assert.Equal(t, []byte{0}, c.call(rpcCmdSetTensorHash, make([]byte, rpcTensorSize+16), 1))
	assert.Equal(t, []byte{0}, c.call(rpcCmdCopyTensor, make([]byte, 2*rpcTensorSize), 1))
	c.call(rpcCmdSetTensor, make([]byte, 1<<20), 0)
	c.call(rpcCmdFreeBuffer, make([]byte, 8), 0)
	// GET_ALLOC_SIZE is ggml_nbytes: F32 10x3 = 120 bytes; Q8_0 64x2 = 136, plus the
	// padding of quantized rows to 512 elements some backends need (448 elements: 476).
	allocSize := func(tensor []byte) uint64 {
		return le.Uint64(c.call(rpcCmdGetAllocSize, append(make([]byte, 4), append(tensor, make([]byte, rpcAllocSizeReqSize-4-rpcTensorSize)...)...), 8))
	}
	assert.Equal(t, uint64(120), allocSize(tensorReq(0, 4, 1, [4]uint32{10, 3, 1, 1})))
	assert.Equal(t, uint64(136+476), allocSize(tensorReq(8, 34, 32, [4]uint32{64, 2, 1, 1})))

	err = r.err()
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrRPCWorker)
	assert.Contains(t, err.Error(), addr)
	assert.Contains(t, err.Error(), "closed the connection")

	// A new connection to a dead relay is answered by the relay alone.
	c2 := dialRelay(t, r)
	hello = c2.call(rpcCmdHello, make([]byte, rpcCapsSize), rpcHelloReplySize)
	assert.Equal(t, byte(rpcProtoMajor), hello[0])
	assert.Equal(t, uint32(2), le.Uint32(c2.call(rpcCmdDeviceCount, nil, 4)), "the count the worker told before")
}

func TestRPCRelayMalformedReply(t *testing.T) {
	addr := fakeWorker(t, func(cmd byte, body []byte, c net.Conn) bool {
		if cmd == rpcCmdGetAlignment {
			writeReply(c, []byte{1, 2, 3, 4}) // 4 bytes instead of 8
			return true
		}
		workerReplies(cmd, body, c)
		return true
	})
	r, err := newRPCRelay(addr, 5*time.Second, 1)
	require.NoError(t, err)
	defer r.close()
	c := dialRelay(t, r)
	c.call(rpcCmdHello, make([]byte, rpcCapsSize), rpcHelloReplySize)
	assert.Equal(t, uint64(4096), binary.LittleEndian.Uint64(c.call(rpcCmdGetAlignment, make([]byte, 4), 8)))
	assert.ErrorContains(t, r.err(), "malformed reply")
}

func TestRPCRelayVersionMismatch(t *testing.T) {
	addr := fakeWorker(t, func(cmd byte, body []byte, c net.Conn) bool {
		if cmd == rpcCmdHello {
			reply := make([]byte, rpcHelloReplySize)
			reply[0] = rpcProtoMajor + 1
			writeReply(c, reply)
		}
		return true
	})
	r, err := newRPCRelay(addr, 5*time.Second, 1)
	require.NoError(t, err)
	defer r.close()
	hello := dialRelay(t, r).call(rpcCmdHello, make([]byte, rpcCapsSize), rpcHelloReplySize)
	assert.Equal(t, byte(rpcProtoMajor), hello[0], "llama.cpp aborts on another version: the relay answers")
	assert.ErrorContains(t, r.err(), "protocol")
	_, err = rpcHandshake(t.Context(), addr, 5*time.Second)
	assert.ErrorContains(t, err, "protocol")
}

func TestRPCRelayHungWorker(t *testing.T) {
	addr := fakeWorker(t, func(cmd byte, body []byte, c net.Conn) bool {
		if cmd == rpcCmdGetTensor {
			time.Sleep(time.Hour) // never answers
		}
		workerReplies(cmd, body, c)
		return true
	})
	const timeout = 300 * time.Millisecond
	r, err := newRPCRelay(addr, timeout, 1)
	require.NoError(t, err)
	defer r.close()
	c := dialRelay(t, r)
	c.call(rpcCmdHello, make([]byte, rpcCapsSize), rpcHelloReplySize)
	start := time.Now()
	assert.Equal(t, make([]byte, 64), c.call(rpcCmdGetTensor, getTensorReq(64), 64))
	assert.GreaterOrEqual(t, time.Since(start), timeout)
	assert.Less(t, time.Since(start), 5*time.Second)
	assert.ErrorIs(t, r.err(), os.ErrDeadlineExceeded)
}

func TestRPCRelayWorkerDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	r, err := newRPCRelay(addr, 5*time.Second, 1)
	require.NoError(t, err)
	defer r.close()
	c := dialRelay(t, r)
	hello := c.call(rpcCmdHello, make([]byte, rpcCapsSize), rpcHelloReplySize)
	assert.Equal(t, byte(rpcProtoMajor), hello[0])
	assert.ErrorContains(t, r.err(), addr)
	_, err = rpcHandshake(t.Context(), addr, 5*time.Second)
	assert.ErrorContains(t, err, "connect")
}
