package llama

/*
#include "shim.h"
*/
import "C"

import (
	"fmt"
	"strings"
	"sync"
)

var backendOnce sync.Once

// initBackend initialises llama.cpp and ggml once per process. Every entry point that
// reaches C calls it; users never need to.
func initBackend() {
	backendOnce.Do(func() {
		C.lgo_log_install() // before init, so init's own messages follow SetLogger (silent by default)
		C.lgo_log_enable(C.bool(logger.Load() != nil))
		C.llama_backend_init()
	})
}

// PinnedRelease is the llama.cpp release this module is written and tested against.
const PinnedRelease = "v0.4.0"

// Version is the version string llama.cpp was built with.
func Version() string {
	initBackend()
	return C.GoString(C.llama_version())
}

// SystemInfo describes the CPU features and backends llama.cpp was built with,
// as llama.cpp's tools print it.
func SystemInfo() string {
	initBackend()
	return strings.TrimSpace(C.GoString(C.llama_print_system_info()))
}

// SupportsGPUOffload reports whether layers can be placed on a GPU in this build.
func SupportsGPUOffload() bool {
	initBackend()
	return bool(C.llama_supports_gpu_offload())
}

// SupportsMmap reports whether models can be memory-mapped on this platform.
func SupportsMmap() bool {
	initBackend()
	return bool(C.llama_supports_mmap())
}

// SupportsMlock reports whether model memory can be locked in RAM on this platform.
func SupportsMlock() bool {
	initBackend()
	return bool(C.llama_supports_mlock())
}

// MaxDevices is the most devices a model can be split across (the length limit of
// ModelParams.TensorSplit).
func MaxDevices() int {
	initBackend()
	return int(C.llama_max_devices())
}

// DeviceType classifies a compute device.
type DeviceType int

const (
	DeviceCPU         DeviceType = iota // the CPU, using system memory
	DeviceGPU                           // a GPU with dedicated memory
	DeviceIntegrated                    // an integrated GPU using host memory
	DeviceAccelerator                   // an accelerator used together with the CPU (BLAS, AMX)
	DeviceMeta                          // a device wrapping several others for tensor parallelism
)

func (t DeviceType) String() string {
	switch t {
	case DeviceCPU:
		return "CPU"
	case DeviceGPU:
		return "GPU"
	case DeviceIntegrated:
		return "iGPU"
	case DeviceAccelerator:
		return "accelerator"
	case DeviceMeta:
		return "meta"
	default:
		return fmt.Sprintf("DeviceType(%d)", int(t))
	}
}

// Device is a compute device llama.cpp can place model layers on.
type Device struct {
	Index       int    // position in Devices()
	Name        string // e.g. "CPU", "CUDA0", "Metal"
	Description string // e.g. the GPU model
	Backend     string // the backend that provides it, e.g. "CUDA"
	Type        DeviceType
	FreeMemory  uint64 // bytes free when Devices was called
	TotalMemory uint64 // bytes in all
}

// Devices lists the compute devices of this build and their memory now.
func Devices() []Device {
	initBackend()
	n := int(C.ggml_backend_dev_count())
	devs := make([]Device, 0, n)
	for i := range n {
		d := C.ggml_backend_dev_get(C.size_t(i))
		var free, total C.size_t
		C.ggml_backend_dev_memory(d, &free, &total)
		devs = append(devs, Device{
			Index:       i,
			Name:        C.GoString(C.ggml_backend_dev_name(d)),
			Description: C.GoString(C.ggml_backend_dev_description(d)),
			Backend:     C.GoString(C.ggml_backend_reg_name(C.ggml_backend_dev_backend_reg(d))),
			Type:        DeviceType(C.ggml_backend_dev_type(d)),
			FreeMemory:  uint64(free),
			TotalMemory: uint64(total),
		})
	}
	return devs
}

// deviceHandle returns the ggml device of d, checking that it still names the same device.
func deviceHandle(d Device) (C.ggml_backend_dev_t, error) {
	if d.Index < 0 || d.Index >= int(C.ggml_backend_dev_count()) {
		return nil, invalidParam("device index %d out of range", d.Index)
	}
	h := C.ggml_backend_dev_get(C.size_t(d.Index))
	if name := C.GoString(C.ggml_backend_dev_name(h)); name != d.Name {
		return nil, invalidParam("device %d is %q, not %q", d.Index, name, d.Name)
	}
	return h, nil
}
