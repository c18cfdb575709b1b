//go:build !rpc

package llama

// Without the rpc build tag the RPC API exists but returns ErrRPCUnavailable, so code using
// it compiles everywhere. scripts/build-llama.sh builds every backend with llama.cpp's RPC
// backend; ggml's registry (libggml.a) then refers to ggml_backend_rpc_reg, which this
// stand-in resolves without linking libggml-rpc.a: a NULL registry, which ggml skips.

/*
#include "native.h"
#include "ggml-backend.h"

ggml_backend_reg_t ggml_backend_rpc_reg(void) { return NULL; }
*/
import "C"

// rpcBuilt reports whether this binary includes llama.cpp's RPC backend.
const rpcBuilt = false

func rpcAddServer(string) ([]C.ggml_backend_dev_t, error) { return nil, ErrRPCUnavailable }

func rpcStartServer(string, string, int, []C.ggml_backend_dev_t) {}
