package llama

// The wire format of llama.cpp's RPC backend (ggml/src/ggml-rpc/ggml-rpc.cpp, protocol 6.0),
// as far as the relay (rpc_relay.go) and the worker front (rpc_worker.go) must understand
// it to stay in step with both ends:
//
//	request: | command (1 byte) | payload size (8 bytes, little endian) | payload |
//	reply:   | payload size (8 bytes) | payload |      (only the commands in rpcReplies)
//
// Commands are strictly sequential on one connection.

/*
#include "native.h"
#include "ggml.h"
#include "ggml-rpc.h"
*/
import "C"

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
)

// RPC commands (enum rpc_cmd).
const (
	rpcCmdAllocBuffer     = 0
	rpcCmdGetAlignment    = 1
	rpcCmdGetMaxSize      = 2
	rpcCmdBufferGetBase   = 3
	rpcCmdFreeBuffer      = 4
	rpcCmdBufferClear     = 5
	rpcCmdSetTensor       = 6
	rpcCmdSetTensorHash   = 7
	rpcCmdGetTensor       = 8
	rpcCmdCopyTensor      = 9
	rpcCmdGraphCompute    = 10
	rpcCmdGetDeviceMemory = 11
	rpcCmdInitTensor      = 12
	rpcCmdGetAllocSize    = 13
	rpcCmdHello           = 14
	rpcCmdDeviceCount     = 15
	rpcCmdGraphRecompute  = 16
	rpcCmdMemsetTensor    = 17
	rpcCmdCount           = 19 // RPC_CMD_NONE (18) never goes over the wire
)

var rpcCmdNames = [rpcCmdCount]string{
	"ALLOC_BUFFER", "GET_ALIGNMENT", "GET_MAX_SIZE", "BUFFER_GET_BASE", "FREE_BUFFER",
	"BUFFER_CLEAR", "SET_TENSOR", "SET_TENSOR_HASH", "GET_TENSOR", "COPY_TENSOR",
	"GRAPH_COMPUTE", "GET_DEVICE_MEMORY", "INIT_TENSOR", "GET_ALLOC_SIZE", "HELLO",
	"DEVICE_COUNT", "GRAPH_RECOMPUTE", "MEMSET_TENSOR", "NONE",
}

func rpcCmdName(cmd byte) string {
	if int(cmd) < len(rpcCmdNames) {
		return rpcCmdNames[cmd]
	}
	return fmt.Sprintf("command %d", cmd)
}

// Protocol version of this build (ggml-rpc.h).
const (
	rpcProtoMajor = C.RPC_PROTO_MAJOR_VERSION
	rpcProtoMinor = C.RPC_PROTO_MINOR_VERSION
	rpcProtoPatch = C.RPC_PROTO_PATCH_VERSION
)

// Sizes of the packed structures.
const (
	rpcCapsSize = 24 // RPC_CONN_CAPS_SIZE
	// struct rpc_tensor: id, type, buffer, ne[], nb[], op, op_params, flags, src[], view_src,
	// view_offs, data, name, use_count.
	rpcTensorSize = 8 + 4 + 8 + 4*C.GGML_MAX_DIMS + 4*C.GGML_MAX_DIMS + 4 + C.GGML_MAX_OP_PARAMS + 4 +
		8*C.GGML_MAX_SRC + 8 + 8 + 8 + C.GGML_MAX_NAME + 4
	rpcTensorType   = 8                               // offset of type (uint32)
	rpcTensorBuffer = 12                              // offset of buffer (uint64, the remote buffer)
	rpcTensorNe     = 20                              // offset of ne[] (uint32 each)
	rpcTensorNb     = rpcTensorNe + 4*C.GGML_MAX_DIMS // offset of nb[] (uint32 each)
	// offset of data (uint64): after op, op_params, flags, src[], view_src, view_offs
	rpcTensorData = rpcTensorNb + 4*C.GGML_MAX_DIMS + 4 + C.GGML_MAX_OP_PARAMS + 4 + 8*C.GGML_MAX_SRC + 8 + 8

	rpcHelloReplySize    = 4 + rpcCapsSize
	rpcGetTensorReqSize  = rpcTensorSize + 8 + 8 // tensor, offset, size
	rpcAllocSizeReqSize  = 4 + rpcTensorSize*(1+C.GGML_MAX_SRC)
	rpcMaxBufferedPacket = 1 << 12 // requests up to this size are read whole; larger ones stream
)

// rpcRequestSizes are the payload sizes of the fixed-size requests (-1: variable).
var rpcRequestSizes = [rpcCmdCount]int64{
	rpcCmdAllocBuffer:     12,
	rpcCmdGetAlignment:    4,
	rpcCmdGetMaxSize:      4,
	rpcCmdBufferGetBase:   8,
	rpcCmdFreeBuffer:      8,
	rpcCmdBufferClear:     9,
	rpcCmdSetTensor:       -1,
	rpcCmdSetTensorHash:   rpcTensorSize + 8 + 8,
	rpcCmdGetTensor:       rpcGetTensorReqSize,
	rpcCmdCopyTensor:      2 * rpcTensorSize,
	rpcCmdGraphCompute:    -1,
	rpcCmdGetDeviceMemory: 4,
	rpcCmdInitTensor:      rpcTensorSize,
	rpcCmdGetAllocSize:    rpcAllocSizeReqSize,
	rpcCmdHello:           rpcCapsSize,
	rpcCmdDeviceCount:     0,
	rpcCmdGraphRecompute:  4,
	rpcCmdMemsetTensor:    rpcTensorSize + 8 + 8 + 1,
	18:                    -1,
}

// rpcReplies gives the reply payload size of each command: 0 = no reply at all,
// -1 = the size requested (GET_TENSOR).
var rpcReplies = [rpcCmdCount]int64{
	rpcCmdAllocBuffer:     16,
	rpcCmdGetAlignment:    8,
	rpcCmdGetMaxSize:      8,
	rpcCmdBufferGetBase:   8,
	rpcCmdSetTensorHash:   1,
	rpcCmdGetTensor:       -1,
	rpcCmdCopyTensor:      1,
	rpcCmdGetDeviceMemory: 16,
	rpcCmdGetAllocSize:    8,
	rpcCmdHello:           rpcHelloReplySize,
	rpcCmdDeviceCount:     4,
}

// rpcRequest is one request read from a connection. Payloads up to rpcMaxBufferedPacket
// are in body; larger ones are still unread (size bytes) and must be streamed.
type rpcRequest struct {
	cmd  byte
	size uint64
	body []byte // nil when streamed
}

func (r *rpcRequest) streamed() bool { return r.body == nil && r.size > 0 }

// readRPCRequest reads a request header, and its payload when small.
func readRPCRequest(rd *bufio.Reader, buf []byte) (rpcRequest, error) {
	var hdr [9]byte
	if _, err := io.ReadFull(rd, hdr[:]); err != nil {
		return rpcRequest{}, err
	}
	req := rpcRequest{cmd: hdr[0], size: binary.LittleEndian.Uint64(hdr[1:])}
	if req.size <= rpcMaxBufferedPacket {
		req.body = buf[:req.size]
		if _, err := io.ReadFull(rd, req.body); err != nil {
			return rpcRequest{}, err
		}
	}
	return req, nil
}

// wellFormed reports whether a request of a known command has its protocol size.
func (r *rpcRequest) wellFormed() bool {
	if r.cmd >= rpcCmdCount {
		return false
	}
	want := rpcRequestSizes[r.cmd]
	return want < 0 || uint64(want) == r.size
}

// replySize is the payload size of the reply to r; 0 when r gets none.
func (r *rpcRequest) replySize() uint64 {
	if r.cmd >= rpcCmdCount {
		return 0
	}
	n := rpcReplies[r.cmd]
	if n >= 0 {
		return uint64(n)
	}
	// GET_TENSOR: the size field of rpc_msg_get_tensor_req.
	if len(r.body) == rpcGetTensorReqSize {
		return binary.LittleEndian.Uint64(r.body[rpcTensorSize+8:])
	}
	return 0
}

func (r *rpcRequest) header() []byte {
	var hdr [9]byte
	hdr[0] = r.cmd
	binary.LittleEndian.PutUint64(hdr[1:], r.size)
	return hdr[:]
}

// rpcTensorNbytes is ggml_nbytes of a serialized rpc_tensor (0 for an invalid type).
func rpcTensorNbytes(t []byte) uint64 {
	typ := binary.LittleEndian.Uint32(t[rpcTensorType:])
	if typ >= C.GGML_TYPE_COUNT {
		return 0
	}
	blck := uint64(C.ggml_blck_size(C.enum_ggml_type(typ)))
	if blck == 0 {
		return 0
	}
	var ne, nb [C.GGML_MAX_DIMS]uint64
	for i := range ne {
		ne[i] = uint64(binary.LittleEndian.Uint32(t[rpcTensorNe+4*i:]))
		nb[i] = uint64(binary.LittleEndian.Uint32(t[rpcTensorNb+4*i:]))
		if ne[i] == 0 {
			return 0
		}
	}
	var n uint64
	if blck == 1 {
		n = uint64(C.ggml_type_size(C.enum_ggml_type(typ)))
		for i := range ne {
			n += (ne[i] - 1) * nb[i]
		}
	} else {
		n = ne[0] * nb[0] / blck
		for i := 1; i < len(ne); i++ {
			n += (ne[i] - 1) * nb[i]
		}
	}
	// The CUDA backend pads rows of quantized tensors to 512 elements.
	if C.ggml_is_quantized(C.enum_ggml_type(typ)) && ne[0]%512 != 0 {
		n += uint64(C.ggml_row_size(C.enum_ggml_type(typ), C.int64_t(512-ne[0]%512)))
	}
	return n
}
