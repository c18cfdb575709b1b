//go:build rpc

package llama

// llama.cpp's RPC backend (libggml-rpc.a, built for every backend by scripts/build-llama.sh),
// combinable with any backend tag; the backend's cgo file gives the library directory. The
// archive needs ggml-base after it: the backend's cgo file names ggml-base before this
// file's flags come, so GNU ld, which resolves archives left to right, gets it once more
// (Apple's linker searches all archives and would only warn about the repetition).

/*
#cgo LDFLAGS: -lggml-rpc
#cgo linux LDFLAGS: -lggml-base -lstdc++
*/
import "C"

// rpcBuilt reports whether this binary includes llama.cpp's RPC backend.
const rpcBuilt = true
