//go:build !cuda && !metal && !vulkan

package llama

/*
#cgo LDFLAGS: -L${SRCDIR}/../third_party/build/cpu/lib -lllama-common -lllama-common-base -lllama -lggml -lggml-cpu -lggml-base -lstdc++ -lm
#cgo linux LDFLAGS: -fopenmp -lpthread -ldl
#cgo darwin LDFLAGS: -framework Accelerate -framework Foundation
*/
import "C"

// Backend is the llama.cpp backend this binary was built for (set by build tags).
const Backend = "cpu"
