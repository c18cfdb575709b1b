#!/usr/bin/env python3
"""Checks that train.py's model is what llama.cpp computes, without training: writes a
model with random weights, in train.py's export format, whose attention is sharp enough
(large query/key weights, random norm weights, grouped-query heads) that a wrong rope
convention, head layout or tensor orientation changes the logits a lot. Then:

  go run ./scripts/train-demo-model/export -in DIR -out /tmp/selfcheck.gguf -type f32

compares llama.cpp's logits with PyTorch's. --break rope|gqa|transpose writes a model
whose reference is computed the wrong way on purpose: the export's check must fail.
"""
import argparse
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train as T  # noqa: E402


def neox_rope(x, cos, sin):
    """The other convention (rotating x[i] with x[i + d/2]): llama.cpp's NEOX mode."""
    xf = x.float()
    h = xf.shape[-1] // 2
    x0, x1 = xf[..., :h], xf[..., h:]
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    return torch.cat((x0 * c - x1 * s, x0 * s + x1 * c), dim=-1).type_as(x)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--ffn", type=int, default=256)
    ap.add_argument("--ctx", type=int, default=128)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--export-dtype", choices=["f16", "f32"], default="f32")
    ap.add_argument("--break", dest="brk", choices=["", "rope", "gqa", "transpose"], default="")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    cfg = T.Config(args.vocab, args.dim, args.layers, args.heads, args.kv_heads, args.ffn, args.ctx, 10000.0, 1e-5)
    model = T.Model(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("wq.weight", "wk.weight")):
                p.normal_(0, 0.6 / np.sqrt(cfg.dim) * 4)  # sharp attention: scores of several units
            elif p.dim() == 2:
                p.normal_(0, 1 / np.sqrt(p.shape[1]))
            else:
                p.uniform_(0.5, 1.5)  # norm weights: used, and in the right place
        model.tok_embd.weight.normal_(0, 1.0)

    if args.brk == "rope":
        T.apply_rope = neox_rope
    elif args.brk == "gqa":
        orig = torch.Tensor.repeat_interleave

        def tiled(self, rep, dim=None, **kw):  # kv head h % n_kv instead of h // rep
            if dim == 1 and isinstance(rep, int):
                return self.repeat(1, rep, 1, 1)
            return orig(self, rep, dim=dim, **kw)
        torch.Tensor.repeat_interleave = tiled
    elif args.brk == "transpose":  # an exporter writing a square matrix transposed
        orig_tensors = T.Model.gguf_tensors

        def transposed(self):
            return [(n, p.t() if n == "blk.0.attn_output.weight" else p) for n, p in orig_tensors(self)]
        T.Model.gguf_tensors = transposed

    g = torch.Generator().manual_seed(args.seed)
    tokens = [1] + torch.randint(3, args.vocab, (args.tokens - 1,), generator=g).tolist()
    info = dict(parameters=sum(p.numel() for p in model.parameters()),
                training=dict(steps=0, epochs=0, seconds=0, device="none (selfcheck: random weights)",
                              command="selfcheck.py " + " ".join(sys.argv[1:])),
                data=dict(vocab="ggml-vocab-llama-spm.gguf"))
    files = T.export(model, args.out, args.export_dtype, 15 << 20, info, tokens)
    print("wrote %s + weights.json to %s (break=%r)" % (", ".join(files), args.out, args.brk or "none"))


if __name__ == "__main__":
    main()
