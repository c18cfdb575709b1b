package llama

// The functions C calls back into. They live alone here because a file with //export
// may only declare, not define, C functions in its preamble.

/*
#include <stdbool.h>
#include <stdint.h>
*/
import "C"

import (
	"runtime/cgo"
	"unsafe"
)

// goLoadProgress receives llama.cpp's model-load progress; false stops the load.
//
//export goLoadProgress
func goLoadProgress(progress C.float, handle C.uintptr_t) C.bool {
	l := cgo.Handle(handle).Value().(*loadProgress)
	return C.bool(l.report(float32(progress)))
}

// goLog receives one llama.cpp/ggml log message (or a continuation fragment). A panic in
// the user's slog handler must not unwind into C: the message is dropped instead.
//
//export goLog
func goLog(level C.int, thread C.uintptr_t, text *C.char) {
	defer func() { _ = recover() }()
	logMessage(int(level), uintptr(thread), unsafe.Pointer(text))
}
