package llama

import (
	"os"
	"path/filepath"
	"runtime"
	"sync"
)

// PhysicalCores is the default thread count of a Context: the number of physical cores
// this process may run on. Hyper-threads share one core's arithmetic units, and
// oversubscribing them slows decoding down, so they are not counted.
func PhysicalCores() int { return physicalCores() }

var physicalCores = sync.OnceValue(func() int {
	n := runtime.NumCPU()
	if p := linuxPhysicalCores(); p > 0 && p < n {
		return p
	}
	return n
})

// linuxPhysicalCores counts distinct sibling sets in sysfs; 0 when unknown.
func linuxPhysicalCores() int {
	paths, _ := filepath.Glob("/sys/devices/system/cpu/cpu[0-9]*/topology/thread_siblings_list")
	cores := map[string]struct{}{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return 0
		}
		cores[string(b)] = struct{}{}
	}
	return len(cores)
}
