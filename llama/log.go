package llama

/*
#include "shim.h"
*/
import "C"

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"
)

var (
	logger   atomic.Pointer[slog.Logger]
	logWatch atomic.Pointer[func(line string)] // sees every info line while set (Quantize progress)
	logMu    sync.Mutex                        // guards pending
	// pending is the line being assembled per logging thread: llama.cpp sends some lines
	// in fragments, joined until the newline, and threads log at once.
	pending = map[uintptr]*pendingLine{}
)

type pendingLine struct {
	text  strings.Builder
	level slog.Level
}

// SetLogger routes llama.cpp and ggml log output to l, one record per line, with the
// attribute source=llama.cpp. nil (the default) silences it.
func SetLogger(l *slog.Logger) {
	logger.Store(l)
	initBackend()
	updateLogForwarding()
}

// updateLogForwarding lets llama.cpp's messages reach Go only when something reads them.
func updateLogForwarding() {
	C.lgo_log_enable(C.bool(logger.Load() != nil || logWatch.Load() != nil))
}

// watchLog passes every complete info line to fn until the returned stop is called.
func watchLog(fn func(line string)) (stop func()) {
	initBackend()
	logWatch.Store(&fn)
	updateLogForwarding()
	return func() {
		logWatch.Store(nil)
		updateLogForwarding()
	}
}

// slogLevel maps ggml_log_level (NONE 0, DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5);
// ok is false for CONT, which continues the previous line at its level.
func slogLevel(level int) (lvl slog.Level, ok bool) {
	switch level {
	case 1:
		return slog.LevelDebug, true
	case 3:
		return slog.LevelWarn, true
	case 4:
		return slog.LevelError, true
	case 5:
		return 0, false
	default:
		return slog.LevelInfo, true
	}
}

func logMessage(level int, thread uintptr, text unsafe.Pointer) {
	logMu.Lock()
	defer logMu.Unlock()
	p := pending[thread]
	if p == nil {
		p = &pendingLine{}
		pending[thread] = p
	}
	if lvl, ok := slogLevel(level); ok {
		p.flush(thread) // a new message: whatever was pending is complete
		p.level = lvl
	}
	l := logger.Load()
	watched := p.level == slog.LevelInfo && logWatch.Load() != nil
	if p.level != slog.LevelError && !watched && (l == nil || !l.Enabled(context.Background(), p.level)) {
		p.text.Reset()
		return
	}
	p.text.WriteString(C.GoString((*C.char)(text)))
	s := p.text.String()
	if !strings.Contains(s, "\n") {
		return
	}
	p.text.Reset()
	lines := strings.Split(s, "\n")
	for _, line := range lines[:len(lines)-1] {
		emitLogLine(thread, p.level, line)
	}
	p.text.WriteString(lines[len(lines)-1])
}

func (p *pendingLine) flush(thread uintptr) {
	if p.text.Len() > 0 {
		emitLogLine(thread, p.level, p.text.String())
		p.text.Reset()
	}
}

func emitLogLine(thread uintptr, level slog.Level, line string) {
	line = strings.TrimRight(line, " \r\t")
	if line == "" {
		return
	}
	if level == slog.LevelError {
		llamaErrors.add(thread, line)
	}
	if w := logWatch.Load(); w != nil && level == slog.LevelInfo {
		(*w)(line)
	}
	if l := logger.Load(); l != nil && l.Enabled(context.Background(), level) {
		l.Log(context.Background(), level, line, slog.String("source", "llama.cpp"))
	}
}

// logGo logs an event of this package's own (source=llamago) to the SetLogger logger.
func logGo(level slog.Level, msg string, args ...any) {
	if l := logger.Load(); l != nil {
		l.Log(context.Background(), level, msg, append(args, slog.String("source", "llamago"))...)
	}
}

// llamaErrors keeps the last error lines llama.cpp logged, with the thread that logged
// them, so that a failed call can say why ("failed to open file", "tensor data is not
// within the file bounds", ...) with its own lines, not those of a call failing at the same
// time on another goroutine.
var llamaErrors errorLines

type errorLine struct {
	thread uintptr
	text   string
}

type errorLines struct {
	mu    sync.Mutex
	seq   uint64
	lines [256]errorLine
}

func (e *errorLines) add(thread uintptr, line string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.lines[e.seq%uint64(len(e.lines))] = errorLine{thread, line}
	e.seq++
}

// errorCapture collects the error lines llama.cpp logs on one OS thread during a call:
// captureErrors locks the goroutine to its thread until done, so the C calls in between
// run there.
type errorCapture struct {
	mark   uint64
	thread uintptr
}

func captureErrors() errorCapture {
	runtime.LockOSThread()
	llamaErrors.mu.Lock()
	defer llamaErrors.mu.Unlock()
	return errorCapture{mark: llamaErrors.seq, thread: uintptr(C.lgo_thread_key())}
}

func (c errorCapture) done() { runtime.UnlockOSThread() }

// err returns an error of fallback plus the lines this thread logged since the capture began.
func (c errorCapture) err(fallback string) error {
	e := &llamaErrors
	e.mu.Lock()
	defer e.mu.Unlock()
	var got []string
	for s := max(c.mark, e.seq-min(e.seq, uint64(len(e.lines)))); s < e.seq; s++ {
		if l := e.lines[s%uint64(len(e.lines))]; l.thread == c.thread {
			got = append(got, l.text)
		}
	}
	if len(got) == 0 {
		return errors.New(fallback)
	}
	return errors.New(fallback + ": " + strings.Join(got, "; "))
}
