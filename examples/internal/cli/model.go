package cli

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/llamago/llamago/examples/internal/modelfile"
	"github.com/llamago/llamago/llama"
)

// ModelFlags are llama.cpp's model flags.
type ModelFlags struct {
	Model       string   // -m: a GGUF file, or modelfile.Synthetic+SHAPE
	Models      []string // every -m given
	ManyModels  bool     // set before Parse when -m may be repeated (the server serves several)
	HFRepo      string   // -hf: user/repo[:quant]
	HFFile      string   // -hff: a file of the -hf repository instead of the quant's
	ModelURL    string   // -mu
	Offline     bool     // --offline: use cached downloads only
	MMProj      string   // -mm: a multimodal projector file (programs that call RegisterProjector)
	MMProjURL   string   // -mmu: a projector to download
	NoMMProj    bool     // --no-mmproj: no projector from the -hf repository
	GPULayers   string   // -ngl: a number, "all" or "auto"
	SplitMode   string   // -sm: none, layer, row, tensor
	TensorSplit string   // -ts: proportions per device, "3,1"
	MainGPU     int      // -mg
	Mlock       bool
	NoMmap      bool
}

func (m *ModelFlags) defaults() { m.GPULayers, m.SplitMode = "all", "layer" }

// Model registers -m, -hf, -mu, -ngl, -sm, -ts, -mg, --mlock, --no-mmap.
func Model(f *Flags) {
	m := &f.ModelFlags
	g := f.Group("model")
	g.Func("-m, --model", "FNAME", "model path (default: the demo model "+modelfile.Demo+" in a llamago checkout; "+
		modelfile.Synthetic+"SHAPE: random weights, e.g. "+modelfile.Synthetic+"qwen2-0.5b)", "", func(v string) error {
		if m.Model == "" {
			m.Model = v
		}
		m.Models = append(m.Models, v)
		return nil
	})
	g.String(&m.HFRepo, "-hf, -hfr, --hf-repo", "<user>/<model>[:quant]", "Hugging Face model repository; quant is optional, case-insensitive, default Q4_K_M or the first GGUF file (token from $HF_TOKEN)")
	g.String(&m.HFFile, "-hff, --hf-file", "FILE", "a file of the -hf repository, instead of choosing by quant")
	g.String(&m.ModelURL, "-mu, --model-url", "URL", "model download URL")
	g.Bool(&m.Offline, "--offline", "use only models already downloaded (also $LLAMA_OFFLINE=1)")
	g.String(&m.GPULayers, "-ngl, --gpu-layers, --n-gpu-layers", "N", "layers to store in GPU memory: a number, 'all' or 'auto' (fit layers and context to the free memory)")
	g.String(&m.SplitMode, "-sm, --split-mode", "{none,layer,row,tensor}", "how to split the model across GPUs")
	g.String(&m.TensorSplit, "-ts, --tensor-split", "N0,N1,...", "fraction of the model to offload to each GPU, e.g. 3,1")
	g.Int(&m.MainGPU, "-mg, --main-gpu", "the GPU for the model (split mode none) or for intermediate results (row)")
	g.Bool(&m.Mlock, "--mlock", "keep the model in RAM (no swapping or compression)")
	g.Bool(&m.NoMmap, "--no-mmap", "read the model into memory instead of mapping it")
}

// RegisterProjector adds llama.cpp's projector flags to g, for a program that takes
// images and audio: -mm (with mmUsage as its help), -mmu and --no-mmproj. See
// ProjectorPath.
func (m *ModelFlags) RegisterProjector(g *Group, mmUsage string) {
	g.String(&m.MMProj, "-mm, --mmproj", "FNAME", mmUsage+"; with -hf it may be omitted: the repository's is downloaded")
	g.String(&m.MMProjURL, "-mmu, --mmproj-url", "URL", "multimodal projector download URL")
	g.Bool(&m.NoMMProj, "--no-mmproj, --no-mmproj-auto", "explicitly disable multimodal projector, useful when using -hf")
}

// FitGPU reports whether -ngl auto asks to fit layers and context to free device memory.
func (m *ModelFlags) FitGPU() bool { return m.GPULayers == "auto" }

// Params returns the model parameters the flags describe (with -ngl auto: all layers;
// see FitGPU).
func (m *ModelFlags) Params() (*llama.ModelParams, error) {
	p := &llama.ModelParams{MainGPU: m.MainGPU, Mlock: m.Mlock, NoMmap: m.NoMmap}
	switch m.GPULayers {
	case "all", "auto", "-1":
		p.GPULayers = -1
	default:
		n, err := strconv.Atoi(m.GPULayers)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("-ngl %q: want a number of layers, all or auto", m.GPULayers)
		}
		p.GPULayers = n
	}
	switch m.SplitMode {
	case "layer":
		p.SplitMode = llama.SplitLayer
	case "none":
		p.SplitMode = llama.SplitNone
	case "row":
		p.SplitMode = llama.SplitRow
	case "tensor":
		p.SplitMode = llama.SplitTensor
	default:
		return nil, fmt.Errorf("-sm %q: want none, layer, row or tensor", m.SplitMode)
	}
	if m.TensorSplit != "" {
		for part := range strings.SplitSeq(strings.NewReplacer("/", ",").Replace(m.TensorSplit), ",") {
			v, err := strconv.ParseFloat(strings.TrimSpace(part), 32)
			if err != nil || v < 0 {
				return nil, fmt.Errorf("-ts %q: want non-negative proportions such as 3,1", m.TensorSplit)
			}
			p.TensorSplit = append(p.TensorSplit, float32(v))
		}
	}
	return p, nil
}

// Fit applies -ngl auto to the parameters for the model at path: llama.cpp's fitting of
// layers (and of the context, with -c 0) to the free device memory, its decision written
// to w. Without -ngl auto it returns mp and cp as they are.
func (m *ModelFlags) Fit(ctx context.Context, path string, mp *llama.ModelParams, cp *llama.ContextParams, w io.Writer) (*llama.ModelParams, *llama.ContextParams, error) {
	if !m.FitGPU() {
		return mp, cp, nil
	}
	res, err := llama.FitToMemory(ctx, path, mp, cp, nil)
	if err != nil {
		return nil, nil, err
	}
	fmt.Fprintf(w, "-ngl auto: %s\n", res)
	return &res.Model, &res.Context, nil
}
