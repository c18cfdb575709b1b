package llama

/*
#include "shim.h"
*/
import "C"

import (
	"runtime"
	"slices"
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
		c.rowOut = make([]*RowSample, len(rows))
	}
	claimed := c.rowOut[:0] // the rows to sample, each with its sampler claimed
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
		if r.Err = c.outputIndex(r.Row); r.Err != nil {
			r.Sampler.use.Unlock()
			continue
		}
		claimed = append(claimed, r)
	}
	device := c.attached.any()
	if !device {
		C.llama_synchronize(c.ptr) // one wait for every row below
	} else {
		// The device's picks of every row after one wait, not one per row.
		c.pickIdx, c.picked = c.pickIdx[:0], slices.Grow(c.picked[:0], len(claimed))[:len(claimed)]
		for _, r := range claimed {
			c.pickIdx = append(c.pickIdx, C.int32_t(r.Row))
		}
		if len(claimed) > 0 && C.lgo_sampled_tokens(c.ptr, &c.pickIdx[0], C.int32_t(len(claimed)), &c.picked[0]) != 0 {
			for i := range c.picked {
				c.picked[i] = C.LLAMA_TOKEN_NULL // read them one by one below
			}
		}
	}
	n := 0 // rows whose chains run on the CPU, packed at the front of c.rowOut
	for i, r := range claimed {
		s := r.Sampler
		if device && c.picked[i] != C.LLAMA_TOKEN_NULL {
			*s.row = C.lgo_row{token: c.picked[i]}
		} else if C.lgo_row_get(c.ptr, C.int32_t(r.Row), C.bool(device), false, s.row, s.errSlot) != 0 {
			r.Err = s.takeError(ErrNoLogits)
		}
		if r.Err == nil {
			r.Err = s.takesDevicePick(c, s.row)
		}
		if r.Err == nil && s.row.token == C.LLAMA_TOKEN_NULL {
			c.rowOut[n] = r // for the workers below; claimed[j] for j > i is still ahead
			n++
			continue
		}
		if r.Err == nil {
			// Picked on the device: accepting it is cheap, no worker needed.
			r.Token, r.Err = s.sampleRow(s.row)
		}
		s.use.Unlock()
	}
	sample := func(i int) {
		r := c.rowOut[i]
		r.Token, r.Err = r.Sampler.sampleRow(r.Sampler.row)
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
