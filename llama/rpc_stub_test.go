//go:build !rpc

package llama

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// Without the rpc tag the RPC API compiles and says what is missing.
func TestRPCUnavailable(t *testing.T) {
	_, err := AddRPCServer(t.Context(), "127.0.0.1:50052", nil)
	assert.ErrorIs(t, err, ErrRPCUnavailable)
	_, err = ListenRPC(nil)
	assert.ErrorIs(t, err, ErrRPCUnavailable)
	assert.Empty(t, RPCDevices())
	assert.Contains(t, ErrRPCUnavailable.Error(), "-tags rpc")
}
