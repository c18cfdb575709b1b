package llama

/*
#include "native.h"
#include "ggml.h"
#include "ggml-rpc.h"
*/
import "C"

import "github.com/llamago/llamago/internal/rpcwire"

// The wire constants of package internal/rpcwire must be the pinned headers': a pin bump
// that changes one stops the build here (a negative constant overflows uint).
const (
	_ = uint(rpcwire.ProtoMajor-C.RPC_PROTO_MAJOR_VERSION) + uint(C.RPC_PROTO_MAJOR_VERSION-rpcwire.ProtoMajor)
	_ = uint(rpcwire.ProtoMinor-C.RPC_PROTO_MINOR_VERSION) + uint(C.RPC_PROTO_MINOR_VERSION-rpcwire.ProtoMinor)
	_ = uint(rpcwire.ProtoPatch-C.RPC_PROTO_PATCH_VERSION) + uint(C.RPC_PROTO_PATCH_VERSION-rpcwire.ProtoPatch)
	_ = uint(rpcwire.MaxDims-C.GGML_MAX_DIMS) + uint(C.GGML_MAX_DIMS-rpcwire.MaxDims)
	_ = uint(rpcwire.MaxSrc-C.GGML_MAX_SRC) + uint(C.GGML_MAX_SRC-rpcwire.MaxSrc)
	_ = uint(rpcwire.MaxOpParams-C.GGML_MAX_OP_PARAMS) + uint(C.GGML_MAX_OP_PARAMS-rpcwire.MaxOpParams)
	_ = uint(rpcwire.MaxName-C.GGML_MAX_NAME) + uint(C.GGML_MAX_NAME-rpcwire.MaxName)
)
