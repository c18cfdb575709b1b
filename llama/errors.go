package llama

import (
	"errors"
	"fmt"
)

// Sentinel errors for branching with errors.Is. Typed errors below carry detail and
// unwrap to these where one applies.
var (
	// ErrClosed is returned by any use of a Model, Context or Batch after Close.
	ErrClosed = errors.New("llama: use after Close")
	// ErrAborted is returned when a load or decode was stopped by its context.Context.
	// The error also matches the context's cause (context.Canceled, DeadlineExceeded, ...).
	ErrAborted = errors.New("llama: aborted")
	// ErrContextFull is returned when the KV cache has no room for a batch.
	ErrContextFull = errors.New("llama: context full: no KV cache slot for the batch")
	// ErrInvalidToken is returned for a token id outside [0, vocabulary size).
	ErrInvalidToken = errors.New("llama: invalid token id")
	// ErrInvalidBatch is returned for a batch llama.cpp would reject or abort on.
	ErrInvalidBatch = errors.New("llama: invalid batch")
	// ErrNoLogits is returned when asking for logits or embeddings of a batch index
	// that was not marked for output in the last decode.
	ErrNoLogits = errors.New("llama: no output for this batch index")
	// ErrInvalidUTF8 is returned for text that is not valid UTF-8.
	ErrInvalidUTF8 = errors.New("llama: text is not valid UTF-8")
	// ErrChat is returned for conversations, tools or templates that cannot be rendered
	// or parsed; the error message says why.
	ErrChat = errors.New("llama: chat")
	// ErrGrammar is returned when a grammar cannot be parsed, allows no token, or
	// forbids a token given to Sampler.Accept.
	ErrGrammar = errors.New("llama: grammar")
	// ErrInvalidParams is returned for out-of-range parameters.
	ErrInvalidParams = errors.New("llama: invalid parameter")
	// ErrInputTooLong is returned when one input to Embed, TokenEmbeddings or Rerank has
	// more tokens than the context can embed in one pass (see Context.EmbedMaxTokens).
	ErrInputTooLong = errors.New("llama: input too long for the context")
	// ErrSamplerBusy is returned when a Sampler is used by a second goroutine while
	// another call (or a generation) uses it. A Sampler serves one goroutine at a time.
	ErrSamplerBusy = errors.New("llama: sampler in use by another goroutine")
	// ErrContextBusy is returned when a Context is used by a second goroutine while
	// another call on it is in progress. A Context serves one goroutine at a time.
	ErrContextBusy = errors.New("llama: context in use by another goroutine")
	// ErrRPCUnavailable is returned by the RPC functions (AddRPCServer, ListenRPC) in a
	// binary built without the rpc build tag.
	ErrRPCUnavailable = errors.New("llama: RPC support not built in (build with -tags rpc)")
	// ErrRPCWorker is matched by every *RPCError: an RPC worker could not be reached,
	// failed or stopped answering within its timeout.
	ErrRPCWorker = errors.New("llama: RPC worker failed")
)

// LoadError reports a model that could not be loaded.
type LoadError struct {
	Path string
	Err  error
}

func (e *LoadError) Error() string { return fmt.Sprintf("llama: load %s: %v", e.Path, e.Err) }
func (e *LoadError) Unwrap() error { return e.Err }

// DecodeError reports a non-zero status of llama_decode or llama_encode that has no
// sentinel of its own. Code is llama.cpp's return value.
type DecodeError struct {
	Op   string // "decode" or "encode"
	Code int
}

func (e *DecodeError) Error() string {
	switch {
	case e.Code == -1:
		return fmt.Sprintf("llama: %s: invalid input batch (status -1)", e.Op)
	case e.Code < -1:
		return fmt.Sprintf("llama: %s: fatal error (status %d); the context memory may hold part of the batch", e.Op, e.Code)
	default:
		return fmt.Sprintf("llama: %s: status %d", e.Op, e.Code)
	}
}

// abortedError matches both ErrAborted and the cause that aborted the work.
type abortedError struct{ cause error }

func (e *abortedError) Error() string {
	return fmt.Sprintf("llama: aborted: %v", e.cause)
}
func (e *abortedError) Unwrap() []error { return []error{ErrAborted, e.cause} }

func aborted(cause error) error {
	if cause == nil {
		cause = errors.New("closed")
	}
	return &abortedError{cause: cause}
}

// errSampler wraps what the shim reports when llama.cpp could not make a sampler stage.
var errSampler = errors.New("llama: sampler")

func invalidParam(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidParams}, args...)...)
}
