//go:build cuda && !metal

package llama

// libllamago-cuda-deps.so is a linker script written by scripts/build-llama.sh: it names the
// CUDA libraries (and NCCL when CMake found it) with their search paths for this build.

/*
#cgo LDFLAGS: -L${SRCDIR}/../third_party/build/cuda/lib -lllama-common -lllama-common-base -lllama -lggml -lggml-cuda -lggml-cpu -lggml-base -lllamago-cuda-deps -lstdc++ -lm
#cgo linux LDFLAGS: -fopenmp -lpthread -ldl
*/
import "C"

// Backend is the llama.cpp backend this binary was built for (set by build tags).
const Backend = "cuda"
