//go:build metal && darwin && !cuda

package llama

// The Metal shader library is embedded in libggml-metal.a (GGML_METAL_EMBED_LIBRARY=ON),
// so binaries need no .metallib file next to them. macOS ships libc++, not libstdc++.

/*
#cgo CPPFLAGS: -DLLAMAGO_TAG_METAL -I${SRCDIR}/../third_party/build/metal -I${SRCDIR}/../../../../cache/llamago/v0.4.0-0424752f/metal
#cgo LDFLAGS: -L${SRCDIR}/../third_party/build/metal/lib -L${SRCDIR}/../../../../cache/llamago/v0.4.0-0424752f/metal/lib
#cgo LDFLAGS: -lmtmd -lvendor-hash -lllama-common -lllama-common-base -lllama -lggml -lggml-metal -lggml-cpu -lggml-base -lc++ -lm
#cgo LDFLAGS: -framework Metal -framework MetalKit -framework Foundation -framework Accelerate
*/
import "C"

// Backend is the llama.cpp backend this binary was built for (set by build tags).
const Backend = "metal"
