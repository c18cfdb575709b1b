//go:build vulkan && !cuda && !metal

package llama

/*
#cgo CPPFLAGS: -DLLAMAGO_TAG_VULKAN -I${SRCDIR}/../third_party/build/vulkan -I${SRCDIR}/../../../../cache/llamago/v0.4.0-0424752f/vulkan
#cgo LDFLAGS: -L${SRCDIR}/../third_party/build/vulkan/lib -L${SRCDIR}/../../../../cache/llamago/v0.4.0-0424752f/vulkan/lib
#cgo LDFLAGS: -lmtmd -lvendor-hash -lllama-common -lllama-common-base -lllama -lggml -lggml-vulkan -lggml-cpu -lggml-base -lvulkan -lm
#cgo linux LDFLAGS: -lstdc++ -fopenmp -lpthread -ldl
#cgo darwin LDFLAGS: -lc++ -framework Foundation
*/
import "C"

// Backend is the llama.cpp backend this binary was built for (set by build tags).
const Backend = "vulkan"
