// Where llama.cpp's headers and archives come from, checked before anything includes them.
//
// The cgo files name two places, searched in order:
//   ${SRCDIR}/../third_party/build             a llamago checkout, built by `make`
//   ${SRCDIR}/../../../../cache/llamago/<pin>  a module that requires llamago: the package sits
//                                              in $GOMODCACHE/github.com/llamago/llamago@<v>/llama,
//                                              so this is $GOMODCACHE/cache/llamago/<pin>, where
//                                              `go run github.com/llamago/llamago/cmd/llamago install`
//                                              links the build it made in the user's cache.
// <pin> names the llama.cpp release and tree of third_party/llama.cpp.lock, so an install for
// another llamago version is not found. Each holds include/ and <backend>/ (whose
// llamago-backend.h scripts/build-llama.sh writes once the archives are complete); the
// cgo_<backend>.go file the build tags select defines LLAMAGO_TAG_<BACKEND> and adds the
// backend's directory. `go vet` of a backend that is not built here (make vet: every tag) sets
// LLAMAGO_TYPECHECK_ONLY, which needs only the headers. Why this and not pkg-config:
// third_party/README.md.
#ifndef LLAMAGO_NATIVE_H
#define LLAMAGO_NATIVE_H

// Without a LLAMAGO_TAG_ the build tags select no backend (metal off macOS, two GPU tags):
// the Go files of buildtags_*.go say so.
#if (defined(LLAMAGO_TAG_CPU) || defined(LLAMAGO_TAG_CUDA) || defined(LLAMAGO_TAG_METAL) || defined(LLAMAGO_TAG_VULKAN)) && \
    (!__has_include("llama.h") || (!__has_include("llamago-backend.h") && !defined(LLAMAGO_TYPECHECK_ONLY)))
#if defined(LLAMAGO_TAG_CUDA)
#error "llamago: llama.cpp is not built for this llamago version and the cuda backend. In a module that requires llamago run: go run github.com/llamago/llamago/cmd/llamago install -backend cuda (in a llamago checkout: make BACKEND=cuda)"
#elif defined(LLAMAGO_TAG_METAL)
#error "llamago: llama.cpp is not built for this llamago version and the metal backend. In a module that requires llamago run: go run github.com/llamago/llamago/cmd/llamago install -backend metal (in a llamago checkout: make BACKEND=metal)"
#elif defined(LLAMAGO_TAG_VULKAN)
#error "llamago: llama.cpp is not built for this llamago version and the vulkan backend. In a module that requires llamago run: go run github.com/llamago/llamago/cmd/llamago install -backend vulkan (in a llamago checkout: make BACKEND=vulkan)"
#else
#error "llamago: llama.cpp is not built for this llamago version (CPU backend). In a module that requires llamago run: go run github.com/llamago/llamago/cmd/llamago install (in a llamago checkout: make)"
#endif
#endif

// A build from before libmtmd was part of it (layout 1) lacks archives package llama links.
#if (defined(LLAMAGO_TAG_CPU) || defined(LLAMAGO_TAG_CUDA) || defined(LLAMAGO_TAG_METAL) || defined(LLAMAGO_TAG_VULKAN)) && \
    !defined(LLAMAGO_TYPECHECK_ONLY) && __has_include("llamago-backend.h")
#include "llamago-backend.h"
#if !defined(LLAMAGO_BUILD_LAYOUT) || LLAMAGO_BUILD_LAYOUT < 2
#error "llamago: llama.cpp was built by an older llamago (without libmtmd): in a llamago checkout run `make libs` (BACKEND=... as before); in a module that requires llamago: go run github.com/llamago/llamago/cmd/llamago install -force"
#endif
#endif

#endif
