package llama

/*
#include "shim.h"
*/
import "C"

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// RowSample asks SampleRows for a token from one output row of the last decode.
type RowSample struct {
	Sampler *Sampler
	Row     int   // batch index, as for Sampler.Sample
	Token   Token // the pick, set by SampleRows
	Err     error // set by SampleRows when this row could not be sampled
}

// SampleRows samples several rows of c's last decode, each with its own sampler (as
// Sampler.Sample does), running the chains in parallel on up to GOMAXPROCS threads:
// what a program decoding many sequences in one batch does after each decode. Each
// entry gets its Token or its Err; a sampler listed twice gets ErrSamplerBusy the second
// time. The error is for the context as a whole (closed, busy).
func (c *Context) SampleRows(rows []RowSample) error {
	if err := c.enter(); err != nil {
		return err
	}
	defer c.mu.Unlock()
	if len(c.rowOut) < len(rows) {
		c.rows = make([]C.lgo_row, len(rows))
		c.rowOut = make([]*RowSample, len(rows))
	}
	device := C.bool(c.attached.any())
	n := 0 // rows claimed and read, packed at the front of c.rows and c.rowOut
	for i := range rows {
		r := &rows[i]
		r.Token, r.Err = 0, nil
		if r.Sampler == nil {
			r.Err = invalidParam("row %d has no sampler", i)
			continue
		}
		if r.Err = r.Sampler.claim(c); r.Err != nil {
			continue
		}
		if r.Err = c.outputIndex(r.Row); r.Err == nil && C.lgo_row_get(c.ptr, C.int32_t(r.Row), device, &c.rows[n], r.Sampler.errSlot) != 0 {
			r.Err = r.Sampler.takeError(ErrNoLogits)
		}
		if r.Err == nil {
			r.Err = r.Sampler.takesDevicePick(c, &c.rows[n])
		}
		if r.Err == nil && c.rows[n].token == C.LLAMA_TOKEN_NULL {
			c.rowOut[n] = r // for the workers below
			n++
			continue
		}
		if r.Err == nil {
			// Picked on the device: accepting it is cheap, no worker needed.
			r.Token, r.Err = r.Sampler.sampleRow(&c.rows[n])
		}
		r.Sampler.use.Unlock()
	}
	sample := func(i int) {
		r := c.rowOut[i]
		r.Token, r.Err = r.Sampler.sampleRow(&c.rows[i])
		r.Sampler.use.Unlock()
		c.rowOut[i] = nil
	}
	threads := min(runtime.GOMAXPROCS(0), n)
	if threads <= 1 {
		for i := range n {
			sample(i)
		}
		return nil
	}
	var next atomic.Int32
	var wg sync.WaitGroup
	for range threads {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				sample(i)
			}
		})
	}
	wg.Wait()
	return nil
}
