package hub

import (
	"errors"
	"fmt"
	"net/http"
)

// Sentinel errors; test with errors.Is. Errors also wrap their cause (for example
// context.Canceled or a *StatusError).
var (
	ErrInvalidRef   = errors.New("hub: invalid model reference")
	ErrNotFound     = errors.New("hub: not found")
	ErrUnauthorized = errors.New("hub: unauthorized")
	ErrNotCached    = errors.New("hub: not in the cache")
	ErrChecksum     = errors.New("hub: checksum mismatch")
	// ErrNoProjector: the repository holds no multimodal projector for the model. Not a
	// failure for programs: they go on without images and audio, as llama.cpp's do.
	// Offline, or with the hub out of reach, it means none is in the cache, and the error
	// matches ErrNotCached too.
	ErrNoProjector = errors.New("hub: no multimodal projector")
)

// errNoCachedProjector tags a cache without the projector: none there, maybe one on the hub.
var errNoCachedProjector = errors.Join(ErrNoProjector, ErrNotCached)

// StatusError is an HTTP response the client could not use.
type StatusError struct {
	Method  string
	URL     string // without query string or fragment
	Code    int
	Message string // the server's explanation, when it gave one
}

func (e *StatusError) Error() string {
	s := fmt.Sprintf("%s %s: HTTP %d %s", e.Method, e.URL, e.Code, http.StatusText(e.Code))
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// hubError carries a message, an optional sentinel and an optional cause.
type hubError struct {
	msg   string
	kind  error
	cause error
}

func (e *hubError) Error() string {
	if e.cause != nil {
		return e.msg + ": " + e.cause.Error()
	}
	return e.msg
}

func (e *hubError) Unwrap() []error {
	var errs []error
	for _, err := range []error{e.kind, e.cause} {
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// newError formats a message starting with "hub: ", tagged with kind (may be nil) and
// wrapping cause (may be nil).
func newError(kind, cause error, format string, args ...any) error {
	return &hubError{msg: "hub: " + fmt.Sprintf(format, args...), kind: kind, cause: cause}
}

// statusKind maps an HTTP status to a sentinel, nil when none fits.
func statusKind(code int) error {
	switch code {
	case http.StatusUnauthorized, http.StatusForbidden:
		return ErrUnauthorized
	case http.StatusNotFound:
		return ErrNotFound
	}
	return nil
}

// tokenHint is the advice given with a 401 or 403.
const tokenHint = "set HF_TOKEN (or Client.Token) to a Hugging Face token that can read it; " +
	"gated models also need their licence accepted on the model page"
