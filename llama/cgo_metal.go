//go:build metal && darwin && !cuda

package llama

// The Metal shader library is embedded in libggml-metal.a (GGML_METAL_EMBED_LIBRARY=ON),
// so binaries need no .metallib file next to them.

/*
#cgo LDFLAGS: -L${SRCDIR}/../third_party/build/metal/lib -lllama-common -lllama-common-base -lllama -lggml -lggml-metal -lggml-cpu -lggml-base -lstdc++ -lm
#cgo LDFLAGS: -framework Metal -framework MetalKit -framework Foundation -framework Accelerate
*/
import "C"

// Backend is the llama.cpp backend this binary was built for (set by build tags).
const Backend = "metal"
