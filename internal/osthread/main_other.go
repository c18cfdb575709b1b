//go:build !linux

package osthread

// onMainThread is false where llama.cpp's CPU backend does not use GNU OpenMP by
// default (macOS, Windows): there a thread's team does not outlive its use.
func onMainThread() bool { return false }
