//go:build cuda && !metal

package llama

// libllamago-cuda-deps.so is a linker script written by scripts/build-llama.sh: it names the
// CUDA libraries (and NCCL when CMake found it) with their search paths for this build.

/*
#cgo CPPFLAGS: -DLLAMAGO_TAG_CUDA -I${SRCDIR}/../third_party/build/cuda -I${SRCDIR}/../../../../cache/llamago/v0.4.0-0424752f/cuda
#cgo LDFLAGS: -L${SRCDIR}/../third_party/build/cuda/lib -L${SRCDIR}/../../../../cache/llamago/v0.4.0-0424752f/cuda/lib
#cgo LDFLAGS: -lmtmd -lvendor-hash -lllama-common -lllama-common-base -lllama -lggml -lggml-cuda -lggml-cpu -lggml-base -lllamago-cuda-deps -lm
#cgo linux LDFLAGS: -lstdc++ -fopenmp -lpthread -ldl
*/
import "C"

// Backend is the llama.cpp backend this binary was built for (set by build tags).
const Backend = "cuda"
