package llama

// Headers are the same for every backend; scripts/build-llama.sh copies them here
// (llama-internal: llama.cpp's own, for device_rows.cpp only).
// The archives to link come from the one cgo_<backend>.go file that the build tags select.

/*
#cgo CFLAGS: -I${SRCDIR}/../third_party/build/include -O2
#cgo CXXFLAGS: -I${SRCDIR}/../third_party/build/include -I${SRCDIR}/../third_party/build/include/llama-internal -O2 -std=c++17
*/
import "C"
