// Package llama is a Go binding of llama.cpp: load GGUF models, tokenize, decode
// batches and read logits, on the CPU or a GPU chosen by build tag
// (none: CPU, cuda, metal, vulkan). llama.cpp is built into static archives that this
// package links: by `make` in a llamago checkout, and in a module that requires llamago
// by `go run github.com/llamago/llamago/cmd/llamago install [-backend cuda]` (README).
//
// Concurrency: a Model is safe for concurrent use: share one Model among many goroutines,
// each decoding through its own Context. A Context, Sampler and Batch serve one goroutine
// at a time; a Context or Sampler used by a second goroutine while a call (or a
// generation) is in progress returns ErrContextBusy or ErrSamplerBusy to it instead of
// corrupting memory. Close waits for the call in progress (and aborts a decode).
//
// Threads: the CPU backend's OpenMP workers belong to the OS thread that calls llama.cpp,
// and a goroutine moves between OS threads; every thread that computed would keep a team
// of workers, and too many teams slow all of them. So a Context whose model computes
// layers on the CPU decodes on an OS thread of its own, started outside the Go runtime,
// whichever goroutine calls (a hand-over of microseconds per decode; the caller waits in
// Go's poller, not in a cgo call, which keeps Go's monitor thread from preempting the
// workers), and the thread ends with the context; one whose layers all run on GPUs
// decodes on the caller's thread.
//
// Sampling: on a context whose output layer runs on a GPU, Generate and GenerateText
// pick with Greedy alone or a chain led by TopK on the device by themselves (see
// Generate); SetBackendSampler does it by hand for any sequence.
//
// Everything that owns C memory has an idempotent Close; using it afterwards returns
// ErrClosed. A Context keeps its Model's memory alive until the Context is closed.
//
// Bad input returns an error checked in Go before llama.cpp could abort the process;
// model files get a pure-Go pre-check (package gguf) before llama.cpp opens them.
// The guarded conditions and what they return:
//
//	missing, unreadable, directory, empty, non-GGUF, truncated file       *LoadError (with the cause)
//	malformed GGUF: counts, lengths, offsets beyond the file, types
//	(the other files of a split model too)                                *LoadError (package gguf pre-check)
//	absurd metadata: block_count outside 1..512, nextn_predict_layers
//	above it, expert counts llama.cpp asserts on (> 1024, more used
//	than exist, bad groups), unknown rope scaling type, NaN or negative
//	norm epsilon, duplicate token strings (up to a NUL, as llama.cpp
//	reads them), special token ids outside
//	the vocabulary, tensor data at file offsets ggml cannot map           *LoadError (pre-check)
//	wrong types for known keys (block_count as a string, tokens as an
//	int array, context_length as int32, ...)                              *LoadError (pre-check)
//	tensor split with no flash-attention kernel for the head size (CUDA)  ErrInvalidParams
//	token id < 0 or >= vocabulary size (tokens, pieces, batches,
//	prompts, logit bias, triggers, Accept, Apply)                         ErrInvalidToken
//	invalid UTF-8 text (Tokenize, prompts, chat messages, grammars)       ErrInvalidUTF8 (wrapped by ErrChat; grammars: ErrGrammar)
//	empty batch, more tokens than the effective n_batch (n_batch is
//	clamped to n_ctx), bad sequence ids or positions, encoder batch >
//	n_ubatch, learned positions past the trained context                  ErrInvalidBatch
//	prompt longer than the context / cache full                           ErrContextFull
//	logits, embeddings or sampling of an index without output             ErrNoLogits
//	grammar syntax errors, nesting deeper than MaxGrammarNesting,
//	repetitions {m,n} with n < m or chained deeper than
//	MaxGrammarRepetitionChain (x+++), left recursion (also through rules
//	that can match nothing), a token the grammar forbids (incl. end of
//	generation too early)                                                 ErrGrammar
//	out-of-range n_ctx, n_batch, n_ubatch, n_seq_max, threads, sampler,
//	batch, quantize parameters; mean pooling with n_ubatch not a
//	multiple of n_seq_max                                                 ErrInvalidParams
//	saved state (SetState, SetSeqState, Load*StateFile, ChatSession.Load)
//	that is empty, truncated, damaged, of another model or cache type, a
//	whole state for a sequence or the reverse, more cells than the
//	context has, a missing file or a directory                            ErrInvalidState (what llama.cpp
//	                                                                      refuses part way is left empty)
//	LoRA adapter files: missing, a directory, malformed GGUF, not an
//	adapter, another architecture, tensors that do not match the model    *LoadError
//	SetLoRA with a nil adapter, one of another model, listed twice, a
//	non-finite scale                                                      ErrInvalidParams; a closed adapter: ErrClosed
//	control vector files without direction.<layer> F32 1-D tensors, with
//	layer 0 or above 512, sizes that differ, NaN or infinite values       *LoadError
//	SetControlVector of another embedding size, layers outside
//	1..n_layer, no data, non-finite values                                ErrInvalidParams
//	speculative decoding: a draft model whose vocabulary differs (type,
//	special tokens, size by more than 128, any token's text), a drafter
//	returning more tokens than asked or ids outside the vocabulary,
//	DraftMax < 0, a sequence sampling on the device                       ErrInvalidParams / ErrInvalidToken;
//	                                                                      the cache keeps no refused draft
//	projector files: missing, malformed GGUF, not a projector ("clip"),
//	an output size other than the model's embeddings                      *LoadError
//	media: no bytes, bytes no decoder knows, corrupt images, more than
//	MaxImageSide pixels a side (read from the header before decoding),
//	audio for a vision-only projector (or the reverse), raw RGB of the
//	wrong length; prompts whose markers do not match their media          ErrMedia
//	media prompts longer than the sequence's room (before encoding)       ErrContextFull
//	a media prompt ending in media (no text after it), a projector of
//	another model, speculative decoding with media, EvalMedia of a closed
//	prompt (a position that leaves a gap: ErrInvalidBatch)                ErrInvalidParams
//	use of anything after Close                                           ErrClosed (Close twice: nil)
//	a Context used by two goroutines at once                              ErrContextBusy
//	a Sampler used by two goroutines (or generations) at once             ErrSamplerBusy
//	Close while another goroutine decodes or generates                    that call returns ErrAborted (and ErrClosed)
//	cancelled context.Context (load, decode, generation)                  ErrAborted and the cause
//	panics in callbacks C calls (load progress, quantize progress,
//	the slog handler)                                                     recovered: an error or a dropped line
//	GPU out of memory (model or context too large)                        *LoadError / an error from NewContext
//	C++ exceptions: in the shim's entry points, and those llama.cpp's
//	tokenizer throws (a vocabulary without byte-fallback tokens)          an error; none crosses into Go
//	an RPC worker that is down, dies or hangs (load, decode; -tags rpc)   *RPCError (ErrRPCWorker) within
//	                                                                      RPCServerParams.Timeout; the model stays failed
package llama
