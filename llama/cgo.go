package llama

// Headers are the same for every backend (llama-internal: llama.cpp's own, for
// device_rows.cpp only); native.h says where they come from and checks they are there.
// The archives to link come from the one cgo_<backend>.go file that the build tags select.

/*
#cgo CFLAGS: -I${SRCDIR}/../third_party/build/include -I${SRCDIR}/../../../../cache/llamago/v0.4.0-0424752f/include -O2
#cgo CXXFLAGS: -I${SRCDIR}/../third_party/build/include -I${SRCDIR}/../../../../cache/llamago/v0.4.0-0424752f/include -O2 -std=c++17
#cgo CXXFLAGS: -I${SRCDIR}/../third_party/build/include/llama-internal -I${SRCDIR}/../../../../cache/llamago/v0.4.0-0424752f/include/llama-internal
*/
import "C"
