//go:build rpc

package llama

/*
#include "native.h"
#include <stdlib.h>
#include "ggml-backend.h"
#include "ggml-rpc.h"
*/
import "C"

import (
	"errors"
	"unsafe"
)

// rpcAddServer has llama.cpp connect to an RPC endpoint (a relay) and returns its devices.
// They are not registered with ggml: llama.cpp uses them only where ModelParams.Devices
// names them.
func rpcAddServer(addr string) ([]C.ggml_backend_dev_t, error) {
	caddr := C.CString(addr)
	defer C.free(unsafe.Pointer(caddr))
	reg := C.ggml_backend_rpc_add_server(caddr)
	if reg == nil {
		return nil, errors.New("the worker serves no device")
	}
	n := int(C.ggml_backend_reg_dev_count(reg))
	devs := make([]C.ggml_backend_dev_t, n)
	for i := range devs {
		devs[i] = C.ggml_backend_reg_dev_get(reg, C.size_t(i))
	}
	return devs, nil
}

// rpcStartServer runs llama.cpp's RPC server on endpoint (a loopback address behind the
// worker front). It returns only when the server could not start.
func rpcStartServer(endpoint, cacheDir string, threads int, devs []C.ggml_backend_dev_t) {
	cend := C.CString(endpoint)
	defer C.free(unsafe.Pointer(cend))
	var ccache *C.char
	if cacheDir != "" {
		ccache = C.CString(cacheDir)
		defer C.free(unsafe.Pointer(ccache))
	}
	// C memory: the server keeps using the array while it runs.
	arr := (*C.ggml_backend_dev_t)(C.calloc(C.size_t(len(devs)), C.size_t(unsafe.Sizeof(devs[0]))))
	defer C.free(unsafe.Pointer(arr))
	copy(unsafe.Slice(arr, len(devs)), devs)
	C.ggml_backend_rpc_start_server(cend, ccache, C.size_t(threads), C.size_t(len(devs)), arr)
}
