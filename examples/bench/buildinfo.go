package main

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/llamago/llamago/llama"
)

// Set with -ldflags "-X main.buildCommit=... -X main.buildNumber=..." to override what
// buildInfo finds.
var buildCommit, buildNumber string

var (
	commitRE = regexp.MustCompile(`LLAMA_COMMIT\s*=\s*"([^"]*)"`)
	numberRE = regexp.MustCompile(`LLAMA_BUILD_NUMBER\s*=\s*(\d+)`)
)

// buildInfo returns llama-bench's build_commit and build_number for the llama.cpp
// linked into this binary: llama.cpp's own build-info.cpp from the CMake build of
// this backend (third_party/build/<backend>/cmake/common/build-info.cpp, the values
// upstream's tools print), else the commit pinned in third_party/llama.cpp.lock.
// The files are looked for above the working directory and the executable.
func buildInfo() (commit string, number int) {
	commit, number = "unknown", 0
	defer func() {
		if buildCommit != "" {
			commit = buildCommit
		}
		if n, err := strconv.Atoi(buildNumber); err == nil {
			number = n
		}
	}()
	if path := findUp(filepath.Join("third_party", "build", llama.Backend, "cmake", "common", "build-info.cpp")); path != "" {
		if b, err := os.ReadFile(path); err == nil {
			if m := commitRE.FindSubmatch(b); m != nil {
				commit = string(m[1])
			}
			if m := numberRE.FindSubmatch(b); m != nil {
				number, _ = strconv.Atoi(string(m[1]))
			}
			return commit, number
		}
	}
	if path := findUp(filepath.Join("third_party", "llama.cpp.lock")); path != "" {
		if f, err := os.Open(path); err == nil {
			defer f.Close()
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				if v, ok := strings.CutPrefix(sc.Text(), "LLAMA_CPP_COMMIT="); ok && len(v) >= 7 {
					commit = v[:7]
				}
			}
		}
	}
	return commit, number
}

// findUp looks for rel in the working directory, the executable's directory and
// their parents.
func findUp(rel string) string {
	var starts []string
	if d, err := os.Getwd(); err == nil {
		starts = append(starts, d)
	}
	if exe, err := os.Executable(); err == nil {
		starts = append(starts, filepath.Dir(exe))
	}
	for _, dir := range starts {
		for {
			p := filepath.Join(dir, rel)
			if _, err := os.Stat(p); err == nil {
				return p
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return ""
}

// machineInfo fills in what llama-bench reports about the machine: the CPU and GPU
// device descriptions and the backends other than the CPU (or "CPU").
func machineInfo() *env {
	e := &env{}
	e.buildCommit, e.buildNumber = buildInfo()
	var cpus, gpus, backends []string
	for _, d := range llama.Devices() {
		switch d.Type {
		case llama.DeviceCPU, llama.DeviceAccelerator:
			cpus = append(cpus, d.Description)
		case llama.DeviceGPU, llama.DeviceIntegrated:
			gpus = append(gpus, d.Description)
		}
		if b := d.Backend; b != "" && b != "CPU" && d.Type != llama.DeviceMeta && !contains(backends, b) {
			backends = append(backends, b)
		}
	}
	e.cpuInfo = strings.Join(cpus, ", ")
	e.gpuInfo = strings.Join(gpus, ", ")
	e.backends = "CPU"
	if len(backends) > 0 {
		e.backends = strings.Join(backends, ",")
	}
	return e
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
