// Package rpcwire speaks the wire format of llama.cpp's RPC backend as far as the binding
// must understand it: the relay that stands between llama.cpp's RPC client and a worker
// (so that a worker that fails cannot abort the process), the handshake that checks a
// worker before llama.cpp meets it, and the front of a worker that applies a memory limit.
package rpcwire

// The wire format of llama.cpp's RPC backend (ggml/src/ggml-rpc/ggml-rpc.cpp, protocol 6.0),
// as far as the relay (relay.go) and the worker front (front.go) must understand
// it to stay in step with both ends:
//
//	request: | command (1 byte) | payload size (8 bytes, little endian) | payload |
//	reply:   | payload size (8 bytes) | payload |      (only the commands in replies)
//
// Commands are strictly sequential on one connection.

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"github.com/llamago/llamago/llama/gguf"
	"io"
)

// RPC commands (enum rpc_cmd).
const (
	CmdAllocBuffer     = 0
	CmdGetAlignment    = 1
	CmdGetMaxSize      = 2
	CmdBufferGetBase   = 3
	CmdFreeBuffer      = 4
	CmdBufferClear     = 5
	CmdSetTensor       = 6
	CmdSetTensorHash   = 7
	CmdGetTensor       = 8
	CmdCopyTensor      = 9
	CmdGraphCompute    = 10
	CmdGetDeviceMemory = 11
	CmdInitTensor      = 12
	CmdGetAllocSize    = 13
	CmdHello           = 14
	CmdDeviceCount     = 15
	CmdGraphRecompute  = 16
	CmdMemsetTensor    = 17
	CmdCount           = 19 // RPC_CMD_NONE (18) never goes over the wire
)

var cmdNames = [CmdCount]string{
	"ALLOC_BUFFER", "GET_ALIGNMENT", "GET_MAX_SIZE", "BUFFER_GET_BASE", "FREE_BUFFER",
	"BUFFER_CLEAR", "SET_TENSOR", "SET_TENSOR_HASH", "GET_TENSOR", "COPY_TENSOR",
	"GRAPH_COMPUTE", "GET_DEVICE_MEMORY", "INIT_TENSOR", "GET_ALLOC_SIZE", "HELLO",
	"DEVICE_COUNT", "GRAPH_RECOMPUTE", "MEMSET_TENSOR", "NONE",
}

func CmdName(cmd byte) string {
	if int(cmd) < len(cmdNames) {
		return cmdNames[cmd]
	}
	return fmt.Sprintf("command %d", cmd)
}

// Protocol version of the pinned llama.cpp (ggml-rpc.h), and the ggml limits that size its
// structures (ggml.h). Package llama checks at build time that they equal the headers'.
const (
	ProtoMajor = 6
	ProtoMinor = 0
	ProtoPatch = 0

	MaxDims     = 4  // GGML_MAX_DIMS
	MaxSrc      = 10 // GGML_MAX_SRC
	MaxOpParams = 64 // GGML_MAX_OP_PARAMS
	MaxName     = 64 // GGML_MAX_NAME
)

// Sizes of the packed structures.
const (
	CapsSize = 24 // RPC_CONN_CAPS_SIZE
	// struct rpc_tensor: id, type, buffer, ne[], nb[], op, op_params, flags, src[], view_src,
	// view_offs, data, name, use_count.
	TensorSize = 8 + 4 + 8 + 4*MaxDims + 4*MaxDims + 4 + MaxOpParams + 4 +
		8*MaxSrc + 8 + 8 + 8 + MaxName + 4
	tensorTypeOffset   = 8                          // offset of type (uint32)
	tensorBufferOffset = 12                         // offset of buffer (uint64, the remote buffer)
	tensorNeOffset     = 20                         // offset of ne[] (uint32 each)
	tensorNbOffset     = tensorNeOffset + 4*MaxDims // offset of nb[] (uint32 each)
	// offset of data (uint64): after op, op_params, flags, src[], view_src, view_offs
	tensorDataOffset = tensorNbOffset + 4*MaxDims + 4 + MaxOpParams + 4 + 8*MaxSrc + 8 + 8

	HelloReplySize    = 4 + CapsSize
	getTensorReqSize  = TensorSize + 8 + 8 // tensor, offset, size
	allocSizeReqSize  = 4 + TensorSize*(1+MaxSrc)
	MaxBufferedPacket = 1 << 12 // requests up to this size are read whole; larger ones stream
)

// requestSizes are the payload sizes of the fixed-size requests (-1: variable).
var requestSizes = [CmdCount]int64{
	CmdAllocBuffer:     12,
	CmdGetAlignment:    4,
	CmdGetMaxSize:      4,
	CmdBufferGetBase:   8,
	CmdFreeBuffer:      8,
	CmdBufferClear:     9,
	CmdSetTensor:       -1,
	CmdSetTensorHash:   TensorSize + 8 + 8,
	CmdGetTensor:       getTensorReqSize,
	CmdCopyTensor:      2 * TensorSize,
	CmdGraphCompute:    -1,
	CmdGetDeviceMemory: 4,
	CmdInitTensor:      TensorSize,
	CmdGetAllocSize:    allocSizeReqSize,
	CmdHello:           CapsSize,
	CmdDeviceCount:     0,
	CmdGraphRecompute:  4,
	CmdMemsetTensor:    TensorSize + 8 + 8 + 1,
	18:                 -1,
}

// replies gives the reply payload size of each command: 0 = no reply at all,
// -1 = the size requested (GET_TENSOR).
var replies = [CmdCount]int64{
	CmdAllocBuffer:     16,
	CmdGetAlignment:    8,
	CmdGetMaxSize:      8,
	CmdBufferGetBase:   8,
	CmdSetTensorHash:   1,
	CmdGetTensor:       -1,
	CmdCopyTensor:      1,
	CmdGetDeviceMemory: 16,
	CmdGetAllocSize:    8,
	CmdHello:           HelloReplySize,
	CmdDeviceCount:     4,
}

// Request is one request read from a connection. Payloads up to MaxBufferedPacket
// are in Body; larger ones are still unread (Size bytes) and must be streamed.
type Request struct {
	Cmd  byte
	Size uint64
	Body []byte // nil when streamed
}

// Streamed reports whether the payload is still to be read.
func (r *Request) Streamed() bool { return r.Body == nil && r.Size > 0 }

// ReadRequest reads a request header, and its payload when small.
func ReadRequest(rd *bufio.Reader, buf []byte) (Request, error) {
	var hdr [9]byte
	if _, err := io.ReadFull(rd, hdr[:]); err != nil {
		return Request{}, err
	}
	req := Request{Cmd: hdr[0], Size: binary.LittleEndian.Uint64(hdr[1:])}
	if req.Size <= MaxBufferedPacket {
		req.Body = buf[:req.Size]
		if _, err := io.ReadFull(rd, req.Body); err != nil {
			return Request{}, err
		}
	}
	return req, nil
}

// WellFormed reports whether a request of a known command has its protocol size.
func (r *Request) WellFormed() bool {
	if r.Cmd >= CmdCount {
		return false
	}
	want := requestSizes[r.Cmd]
	return want < 0 || uint64(want) == r.Size
}

// ReplySize is the payload size of the reply to r; 0 when r gets none.
func (r *Request) ReplySize() uint64 {
	if r.Cmd >= CmdCount {
		return 0
	}
	n := replies[r.Cmd]
	if n >= 0 {
		return uint64(n)
	}
	// GET_TENSOR: the size field of rpc_msg_get_tensor_req.
	if len(r.Body) == getTensorReqSize {
		return binary.LittleEndian.Uint64(r.Body[TensorSize+8:])
	}
	return 0
}

// Header is the request's header as sent on the wire.
func (r *Request) Header() []byte {
	var hdr [9]byte
	hdr[0] = r.Cmd
	binary.LittleEndian.PutUint64(hdr[1:], r.Size)
	return hdr[:]
}

// HasReply reports whether the worker answers cmd.
func HasReply(cmd byte) bool { return cmd < CmdCount && replies[cmd] != 0 }

// Tensor is what the binding reads and writes of a serialized rpc_tensor (the other
// fields stay zero).
type Tensor struct {
	Type   gguf.TensorType
	Buffer uint64 // the remote buffer
	Data   uint64 // the data's address in it
	Ne, Nb [MaxDims]uint32
}

// DecodeTensor reads a serialized rpc_tensor (TensorSize bytes).
func DecodeTensor(b []byte) Tensor {
	le := binary.LittleEndian
	t := Tensor{Type: gguf.TensorType(le.Uint32(b[tensorTypeOffset:])), Buffer: le.Uint64(b[tensorBufferOffset:]),
		Data: le.Uint64(b[tensorDataOffset:])}
	for i := range MaxDims {
		t.Ne[i] = le.Uint32(b[tensorNeOffset+4*i:])
		t.Nb[i] = le.Uint32(b[tensorNbOffset+4*i:])
	}
	return t
}

// Append appends t serialized (TensorSize bytes) to b.
func (t Tensor) Append(b []byte) []byte {
	out := make([]byte, TensorSize)
	le := binary.LittleEndian
	le.PutUint32(out[tensorTypeOffset:], uint32(t.Type))
	le.PutUint64(out[tensorBufferOffset:], t.Buffer)
	le.PutUint64(out[tensorDataOffset:], t.Data)
	for i := range MaxDims {
		le.PutUint32(out[tensorNeOffset+4*i:], t.Ne[i])
		le.PutUint32(out[tensorNbOffset+4*i:], t.Nb[i])
	}
	return append(b, out...)
}

// Nbytes is ggml_nbytes of t as the CUDA backend allocates it (0 for an invalid type or
// an empty dimension).
func (t Tensor) Nbytes() uint64 {
	if !t.Type.Valid() {
		return 0
	}
	blck, typeSize := uint64(t.Type.BlockSize()), uint64(t.Type.BlockBytes())
	var ne, nb [MaxDims]uint64
	for i := range ne {
		ne[i], nb[i] = uint64(t.Ne[i]), uint64(t.Nb[i])
		if ne[i] == 0 {
			return 0
		}
	}
	var n uint64
	if blck == 1 {
		n = typeSize
		for i := range ne {
			n += (ne[i] - 1) * nb[i]
		}
	} else {
		n = ne[0] * nb[0] / blck
		for i := 1; i < len(ne); i++ {
			n += (ne[i] - 1) * nb[i]
		}
	}
	// The CUDA backend pads rows of quantized tensors (the types with blocks) to 512 elements.
	if blck > 1 && ne[0]%512 != 0 {
		n += typeSize * (512 - ne[0]%512) / blck
	}
	return n
}
