//go:build !cuda && !metal && !vulkan

package llama

/*
#cgo CPPFLAGS: -DLLAMAGO_TAG_CPU -I${SRCDIR}/../third_party/build/cpu -I${SRCDIR}/../../../../cache/llamago/v0.4.0-0424752f/cpu
#cgo LDFLAGS: -L${SRCDIR}/../third_party/build/cpu/lib -L${SRCDIR}/../../../../cache/llamago/v0.4.0-0424752f/cpu/lib
#cgo LDFLAGS: -lmtmd -lvendor-hash -lllama-common -lllama-common-base -lllama -lggml -lggml-cpu -lggml-base -lm
#cgo linux LDFLAGS: -lstdc++ -fopenmp -lpthread -ldl
#cgo darwin LDFLAGS: -lc++ -framework Accelerate -framework Foundation
*/
import "C"

// Backend is the llama.cpp backend this binary was built for (set by build tags).
const Backend = "cpu"
