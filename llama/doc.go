// Package llama is a Go binding of llama.cpp: load GGUF models, tokenize, decode
// batches and read logits, on the CPU or a GPU chosen by build tag
// (none: CPU, cuda, metal, vulkan). llama.cpp is built by the repository's Makefile
// (make BACKEND=cpu|cuda|metal) into static archives that this package links.
//
// Concurrency: a Model is safe for concurrent use; a Context, Sampler and Batch serve one
// goroutine at a time, and a Context or Sampler detects a second goroutine
// (ErrContextBusy, ErrSamplerBusy) instead of corrupting memory.
//
// Everything that owns C memory has an idempotent Close; using it afterwards returns
// ErrClosed. A Context keeps its Model's memory alive until the Context is closed.
//
// Bad input returns an error checked in Go before llama.cpp could abort the process.
// The guarded conditions and what they return:
//
//	missing, unreadable, directory, empty, non-GGUF, truncated file   *LoadError (with llama.cpp's reason)
//	malformed GGUF: counts, lengths, offsets beyond the file, types    *LoadError (package gguf pre-check)
//	block_count outside 1..512, duplicate token strings,
//	special token ids outside the vocabulary                            *LoadError (pre-check)
//	tensor split with no flash-attention kernel for the head size (CUDA) ErrInvalidParams
//	token id < 0 or >= vocabulary size (tokens, pieces, batches,
//	logit bias, triggers, Accept, Apply)                                ErrInvalidToken
//	invalid UTF-8 text to Tokenize                                      ErrInvalidUTF8
//	empty batch, more tokens than the effective n_batch, bad sequence
//	ids or positions, encoder batch > n_ubatch, learned positions past
//	the trained context                                                 ErrInvalidBatch
//	prompt longer than the context / cache full                         ErrContextFull
//	logits, embeddings or sampling of an index without output           ErrNoLogits
//	grammar syntax errors, nesting deeper than MaxGrammarNesting,
//	a token the grammar forbids (incl. end of generation too early)     ErrGrammar
//	out-of-range context, sampler, batch, quantize parameters;
//	mean pooling with n_ubatch not a multiple of n_seq_max              ErrInvalidParams
//	use of anything after Close                                         ErrClosed (Close twice: nil)
//	a Context used by two goroutines at once                            ErrContextBusy
//	a Sampler used by two goroutines (or generations) at once           ErrSamplerBusy
//	Close while another goroutine decodes                               that decode returns ErrAborted
//	cancelled context.Context (load, decode, generation)                ErrAborted and the cause
//	panics in callbacks C calls (load progress, quantize progress,
//	the slog handler)                                                   recovered: an error or a dropped line
//	GPU out of memory (model or context too large)                      *LoadError / an error from NewContext
//	C++ exceptions in the shim                                          errors; none crosses into Go
package llama
