//go:build vulkan && !cuda && !metal

package llama

/*
#cgo LDFLAGS: -L${SRCDIR}/../third_party/build/vulkan/lib -lllama-common -lllama-common-base -lllama -lggml -lggml-vulkan -lggml-cpu -lggml-base -lvulkan -lstdc++ -lm
#cgo linux LDFLAGS: -fopenmp -lpthread -ldl
*/
import "C"

// Backend is the llama.cpp backend this binary was built for (set by build tags).
const Backend = "vulkan"
