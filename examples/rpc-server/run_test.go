//go:build !rpc

package main

import (
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
)

// Without the rpc build tag the command still builds and says what is missing.
func TestRPCServerWithoutTag(t *testing.T) {
	assert.ErrorContains(t, run([]string{"-port", "0", "-threads", "1"}, io.Discard), "-tags rpc")
}
