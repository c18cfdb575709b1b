// Package gguf reads and writes GGUF files, the model format of llama.cpp,
// in pure Go (no cgo).
//
// [Open] and [Read] parse the header, metadata and tensor infos of a file
// of any size without reading tensor data, which stays available through
// [File.TensorData]. Every count, length and offset is validated against
// the file size first, so untrusted files can be checked here before
// llama.cpp (which aborts on some malformed inputs) sees them.
//
// [NewWriter] streams a file tensor by tensor with the alignment and
// padding llama.cpp expects; [Encode] and [Decode] convert between float32
// and the F32, F16, BF16 and Q8_0 tensor types.
package gguf
