package llama

/*
#include "shim.h"
*/
import "C"

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/llamago/llamago/internal/modelcheck"
	"github.com/llamago/llamago/llama/gguf"
)

// ControlVector is a direction added to the output of each layer of a model (llama.cpp's
// control vectors, made by its cvector-generator or repeng): Data holds NEmbd values per
// layer from layer 1 on (layer 0 has none), zeros where a layer has no direction.
type ControlVector struct {
	NEmbd int
	Data  []float32
}

// LoadControlVector reads a control vector GGUF file (F32 tensors "direction.<layer>" of
// NEmbd values, layers from 1) and multiplies it by strength, as llama.cpp's
// --control-vector-scaled does. Add combines several.
func LoadControlVector(path string, strength float32) (*ControlVector, error) {
	if err := finite("control vector strength", strength); err != nil {
		return nil, err
	}
	f, err := gguf.Open(path)
	if err != nil {
		return nil, &LoadError{Path: path, Err: err}
	}
	defer f.Close()
	fail := func(format string, args ...any) (*ControlVector, error) {
		return nil, &LoadError{Path: path, Err: fmt.Errorf(format, args...)}
	}
	v := &ControlVector{}
	for _, t := range f.Tensors {
		layerName, ok := strings.CutPrefix(t.Name, "direction.")
		if !ok {
			continue
		}
		layer, err := strconv.Atoi(layerName)
		switch {
		case err != nil || layer < 1 || layer > modelcheck.MaxLayers: // as block_count: no allocation for absurd layers
			return fail("tensor %s: want direction.<layer> with a layer from 1 to %d", t.Name, modelcheck.MaxLayers)
		case t.Type != gguf.TypeF32 || len(t.Shape) != 1:
			return fail("tensor %s: want a 1-D F32 tensor, got %v %v", t.Name, t.Type, t.Shape)
		case v.NEmbd != 0 && int(t.Shape[0]) != v.NEmbd:
			return fail("tensor %s has %d values, the others %d", t.Name, t.Shape[0], v.NEmbd)
		}
		v.NEmbd = int(t.Shape[0])
		r, err := f.TensorData(t.Name)
		if err != nil {
			return nil, &LoadError{Path: path, Err: err}
		}
		raw, err := io.ReadAll(r)
		if err != nil {
			return nil, &LoadError{Path: path, Err: err}
		}
		if need := layer * v.NEmbd; len(v.Data) < need {
			v.Data = append(v.Data, make([]float32, need-len(v.Data))...)
		}
		dst := v.Data[(layer-1)*v.NEmbd:]
		for i := range v.NEmbd {
			x := math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
			dst[i] += x * strength
		}
	}
	if v.NEmbd == 0 {
		return fail("no direction.<layer> tensors")
	}
	if err := v.check(); err != nil {
		return nil, &LoadError{Path: path, Err: err}
	}
	return v, nil
}

// Add adds o to v (both of the same NEmbd), layer by layer.
func (v *ControlVector) Add(o *ControlVector) error {
	if o.NEmbd != v.NEmbd {
		return invalidParam("control vectors of %d and %d values per layer", v.NEmbd, o.NEmbd)
	}
	if len(o.Data) > len(v.Data) {
		v.Data = append(v.Data, make([]float32, len(o.Data)-len(v.Data))...)
	}
	for i, x := range o.Data {
		v.Data[i] += x
	}
	return nil
}

func (v *ControlVector) check() error {
	if v.NEmbd <= 0 || len(v.Data) == 0 || len(v.Data)%v.NEmbd != 0 {
		return invalidParam("control vector: %d values for %d per layer", len(v.Data), v.NEmbd)
	}
	for _, x := range v.Data {
		if err := finite("control vector value", x); err != nil {
			return err
		}
	}
	return nil
}

// SetControlVector adds v to the output of layers first to last (inclusive, from 1; 0 and
// 0: every layer v has) from the next decode on; nil clears it. v must have the model's
// embedding size.
func (c *Context) SetControlVector(v *ControlVector, first, last int) error {
	nLayer := c.model.info.NLayer
	if v != nil {
		if err := v.check(); err != nil {
			return err
		}
		if v.NEmbd != c.model.info.NEmbd {
			return invalidParam("control vector of %d values per layer for a model of %d", v.NEmbd, c.model.info.NEmbd)
		}
		if first == 0 && last == 0 {
			first, last = 1, nLayer
		}
		if first < 1 || last < first || last > nLayer {
			return invalidParam("control vector layers %d to %d: want 1 <= first <= last <= %d", first, last, nLayer)
		}
	}
	if err := c.enter(); err != nil {
		return err
	}
	defer c.mu.Unlock()
	var rc C.int32_t
	if v == nil {
		rc = C.llama_set_adapter_cvec(c.ptr, nil, 0, 0, 0, 0)
	} else {
		rc = C.llama_set_adapter_cvec(c.ptr, (*C.float)(&v.Data[0]), C.size_t(len(v.Data)), C.int32_t(v.NEmbd), C.int32_t(first), C.int32_t(last))
	}
	if rc != 0 {
		return fmt.Errorf("llama: set control vector: llama.cpp returned %d", int32(rc))
	}
	return nil
}
