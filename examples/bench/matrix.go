package main

import (
	"fmt"
	"slices"

	"github.com/llamago/llamago/llama"
)

// instance is one test of the matrix: one value of every parameter.
type instance struct {
	model       string
	nPrompt     int
	nGen        int
	nDepth      int
	nBatch      int
	nUBatch     int
	typeK       string
	typeV       string
	nThreads    int
	cpuMask     string
	cpuStrict   bool
	poll        int
	nGPULayers  int
	nCPUMoE     int
	splitMode   string
	loadMode    string
	lazyMode    string
	mainGPU     int
	noKVOffload bool
	flashAttn   int
	devices     []string
	tensorSplit []float32
	overrides   string
	embeddings  bool
	noOpOffload bool
	noHost      bool
	fitTarget   int
	fitMinCtx   int
	// app is "" for llama-bench's test, "auto" or "device" for the application-path
	// generation with sampling there.
	app string
}

// instances expands the parameter lists into tests, in llama-bench's order (which keeps
// one loaded model for as many consecutive tests as possible): for every combination,
// the prompt tests, then the generation tests (each followed by its application-path
// variants), then the prompt+generation tests.
func instances(p *params) []instance {
	var out []instance
	for _, m := range p.models {
		for _, fitt := range p.fitTarget {
			for _, fitc := range p.fitMinCtx {
				for _, ngl := range p.nGPULayers {
					for _, ncmoe := range p.nCPUMoE {
						for _, sm := range p.splitMode {
							for _, lm := range p.loadMode {
								for _, lzm := range p.lazyMode {
									for _, mg := range p.mainGPU {
										for _, devs := range p.devices {
											for _, ts := range p.tensorSplit {
												for _, ot := range p.overrides {
													for _, noh := range p.noHost {
														for _, embd := range p.embeddings {
															for _, nopo := range p.noOpOffload {
																base := instance{model: m, fitTarget: fitt, fitMinCtx: fitc, nGPULayers: ngl, nCPUMoE: ncmoe,
																	splitMode: sm, loadMode: lm, lazyMode: lzm, mainGPU: mg, devices: devs, tensorSplit: ts,
																	overrides: ot, noHost: noh, embeddings: embd, noOpOffload: nopo}
																out = append(out, contextInstances(p, base)...)
															}
														}
													}
												}
											}
										}
									}
								}
							}
						}
					}
				}
			}
		}
	}
	return out
}

func contextInstances(p *params, base instance) []instance {
	var out []instance
	for _, nb := range p.nBatch {
		for _, nub := range p.nUBatch {
			for _, tk := range p.typeK {
				for _, tv := range p.typeV {
					for _, nkvo := range p.noKVOffload {
						for _, fa := range p.flashAttn {
							for _, nt := range p.nThreads {
								for _, cm := range p.cpuMask {
									for _, cs := range p.cpuStrict {
										for _, nd := range p.nDepth {
											for _, pl := range p.poll {
												t := base
												t.nBatch, t.nUBatch, t.typeK, t.typeV, t.noKVOffload, t.flashAttn = nb, nub, tk, tv, nkvo, fa
												t.nThreads, t.cpuMask, t.cpuStrict, t.nDepth, t.poll = nt, cm, cs, nd, pl
												for _, n := range p.nPrompt {
													if n > 0 {
														t.nPrompt, t.nGen = n, 0
														out = append(out, t)
													}
												}
												for _, n := range p.nGen {
													if n > 0 {
														t.nPrompt, t.nGen = 0, n
														out = append(out, t)
														for _, app := range p.app {
															a := t
															a.app = app
															out = append(out, a)
														}
													}
												}
												for _, pg := range p.nPG {
													if pg[0] > 0 || pg[1] > 0 {
														t.nPrompt, t.nGen = pg[0], pg[1]
														out = append(out, t)
													}
												}
											}
										}
									}
								}
							}
						}
					}
				}
			}
		}
	}
	return out
}

// sameModel reports whether two tests load the model the same way (so the loaded
// model can be kept).
func (t *instance) sameModel(o *instance) bool {
	return t.model == o.model && t.nGPULayers == o.nGPULayers && t.nCPUMoE == o.nCPUMoE &&
		t.splitMode == o.splitMode && t.mainGPU == o.mainGPU && slices.Equal(t.tensorSplit, o.tensorSplit) &&
		t.loadMode == o.loadMode && t.lazyMode == o.lazyMode && slices.Equal(t.devices, o.devices) &&
		t.noHost == o.noHost && t.overrides == o.overrides
}

var splitModes = map[string]llama.SplitMode{
	"none": llama.SplitNone, "layer": llama.SplitLayer, "row": llama.SplitRow, "tensor": llama.SplitTensor,
}

// modelParams maps the test's model settings onto llamago's.
func (t *instance) modelParams() (*llama.ModelParams, error) {
	mp := &llama.ModelParams{
		GPULayers: t.nGPULayers,
		SplitMode: splitModes[t.splitMode],
		MainGPU:   t.mainGPU,
	}
	if slices.ContainsFunc(t.tensorSplit, func(v float32) bool { return v > 0 }) {
		mp.TensorSplit = t.tensorSplit
	}
	switch t.loadMode {
	case "auto", "mmap":
		// llamago asks for llama.cpp's auto mode, which maps the file unless a device
		// cannot use mapped memory; "mmap" is reported as asked.
	case "none":
		mp.NoMmap = true
	case "mlock":
		mp.NoMmap, mp.Mlock = true, true
	case "mmap+mlock":
		mp.Mlock = true
	}
	for _, name := range t.devices {
		i := slices.IndexFunc(llama.Devices(), func(d llama.Device) bool { return d.Name == name })
		if i < 0 || llama.Devices()[i].Type == llama.DeviceCPU {
			return nil, fmt.Errorf("invalid device: %s (see --list-devices)", name)
		}
		mp.Devices = append(mp.Devices, llama.Devices()[i])
	}
	return mp, nil
}

var flashAttnModes = map[int]llama.FlashAttention{-1: llama.FlashAttentionAuto, 0: llama.FlashAttentionOff, 1: llama.FlashAttentionOn}

// contextParams are llama-bench's context settings for the test: a context just large
// enough for depth, prompt and generation, performance counters off.
func (t *instance) contextParams() (*llama.ContextParams, error) {
	tk, err := llama.ParseCacheType(t.typeK)
	if err != nil {
		return nil, err
	}
	tv, err := llama.ParseCacheType(t.typeV)
	if err != nil {
		return nil, err
	}
	return &llama.ContextParams{
		NCtx:           t.nPrompt + t.nGen + t.nDepth,
		NBatch:         t.nBatch,
		NUBatch:        t.nUBatch,
		Threads:        t.nThreads,
		ThreadsBatch:   t.nThreads,
		FlashAttention: flashAttnModes[t.flashAttn],
		TypeK:          tk,
		TypeV:          tv,
		NoOffloadKQV:   t.noKVOffload,
		Embeddings:     t.embeddings,
		NoOpOffload:    t.noOpOffload,
		NoPerf:         true, // llama_context_default_params, as llama-bench leaves it
	}, nil
}

// name is the test's name as llama-bench's markdown table shows it, with our suffix
// for the application-path rows.
func (t *instance) name() string {
	var s string
	switch {
	case t.nPrompt > 0 && t.nGen == 0:
		s = fmt.Sprintf("pp%d", t.nPrompt)
	case t.nGen > 0 && t.nPrompt == 0:
		s = fmt.Sprintf("tg%d", t.nGen)
	default:
		s = fmt.Sprintf("pp%d+tg%d", t.nPrompt, t.nGen)
	}
	if t.nDepth > 0 {
		s += fmt.Sprintf(" @ d%d", t.nDepth)
	}
	switch t.app {
	case "auto":
		s += " (app)"
	case "device":
		s += " (app, device)"
	}
	return s
}
