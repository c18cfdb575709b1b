// Package llama is a Go binding of llama.cpp: load GGUF models, tokenize, decode
// batches and read logits, on the CPU or a GPU chosen by build tag
// (none: CPU, cuda, metal, vulkan). llama.cpp is built by the repository's Makefile
// (make BACKEND=cpu|cuda|metal) into static archives that this package links.
//
// Concurrency: a Model is safe for concurrent use; a Context, Batch (and everything
// created from a Context) serves one goroutine at a time, and a Context detects a
// second goroutine (ErrContextBusy) instead of corrupting memory.
//
// Everything that owns C memory has an idempotent Close; using it afterwards returns
// ErrClosed. A Context keeps its Model's memory alive until the Context is closed.
//
// Bad input (token ids out of range, oversized batches, invalid UTF-8, bad params)
// returns an error checked in Go before llama.cpp could abort the process.
package llama
