package llama

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// precheckGGUF refuses files that are not GGUF before llama.cpp opens them.
func precheckGGUF(r io.ReaderAt, size int64) error {
	var head [8]byte
	if _, err := r.ReadAt(head[:], 0); err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("not a GGUF file: only %d bytes", size)
		}
		return err
	}
	if string(head[:4]) != "GGUF" {
		return fmt.Errorf("not a GGUF file (magic %q)", head[:4])
	}
	if v := binary.LittleEndian.Uint32(head[4:]); v < 2 || v > 3 {
		return fmt.Errorf("unsupported GGUF version %d", v)
	}
	return nil
}
