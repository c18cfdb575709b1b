package llama

/*
#include "shim.h"
*/
import "C"

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"
)

var (
	logger   atomic.Pointer[slog.Logger]
	logWatch atomic.Pointer[func(line string)] // sees every info line while set (Quantize progress)
	logMu    sync.Mutex                        // guards the line being assembled
	logLine  strings.Builder                   // llama.cpp sends some lines in fragments; joined until the newline
	logLevel slog.Level                        // level of the line being assembled
)

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

func logMessage(level int, text unsafe.Pointer) {
	logMu.Lock()
	defer logMu.Unlock()
	if lvl, ok := slogLevel(level); ok {
		flushLogLine() // a new message: whatever was pending is complete
		logLevel = lvl
	}
	l := logger.Load()
	watched := logLevel == slog.LevelInfo && logWatch.Load() != nil
	if logLevel != slog.LevelError && !watched && (l == nil || !l.Enabled(context.Background(), logLevel)) {
		logLine.Reset()
		return
	}
	logLine.WriteString(C.GoString((*C.char)(text)))
	s := logLine.String()
	if !strings.Contains(s, "\n") {
		return
	}
	logLine.Reset()
	lines := strings.Split(s, "\n")
	for _, line := range lines[:len(lines)-1] {
		emitLogLine(line)
	}
	logLine.WriteString(lines[len(lines)-1])
}

func flushLogLine() {
	if logLine.Len() > 0 {
		emitLogLine(logLine.String())
		logLine.Reset()
	}
}

func emitLogLine(line string) {
	line = strings.TrimRight(line, " \r\t")
	if line == "" {
		return
	}
	if logLevel == slog.LevelError {
		llamaErrors.add(line)
	}
	if w := logWatch.Load(); w != nil && logLevel == slog.LevelInfo {
		(*w)(line)
	}
	if l := logger.Load(); l != nil && l.Enabled(context.Background(), logLevel) {
		l.Log(context.Background(), logLevel, line, slog.String("source", "llama.cpp"))
	}
}

// llamaErrors keeps the last error lines llama.cpp logged, so that a failed call can
// say why ("failed to open file", "tensor data is not within the file bounds", ...).
var llamaErrors errorLines

type errorLines struct {
	mu    sync.Mutex
	seq   uint64
	lines [8]string
}

func (e *errorLines) add(line string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.lines[e.seq%uint64(len(e.lines))] = line
	e.seq++
}

// mark returns a position to pass to since.
func (e *errorLines) mark() uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.seq
}

// since returns an error of fallback plus the lines logged after mark.
func (e *errorLines) since(mark uint64, fallback string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	var got []string
	for s := max(mark, e.seq-min(e.seq, uint64(len(e.lines)))); s < e.seq; s++ {
		got = append(got, e.lines[s%uint64(len(e.lines))])
	}
	if len(got) == 0 {
		return errors.New(fallback)
	}
	return errors.New(fallback + ": " + strings.Join(got, "; "))
}
