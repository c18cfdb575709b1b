#!/usr/bin/env python3
"""Trains the KJV demo model: a small Llama-architecture transformer on the King James
Bible, tokenized with llama.cpp's Llama SPM vocabulary by prepare.sh.

Needs only PyTorch and NumPy (PyTorch >= 1.13; 2.x uses scaled_dot_product_attention
and, unless --no-compile, torch.compile). Runs on one GPU in bf16 autocast, or on the CPU
in float32 for the pipeline check.

The model is exactly what llama.cpp computes for general.architecture "llama", so the
weights need no conversion: RMSNorm, rope in llama.cpp's "normal" mode (rotating the
adjacent pairs x[2i], x[2i+1] of each head by pos * base^(-2i/head_dim)), causal
attention with grouped-query heads (query head h uses key/value head
h // (n_head / n_head_kv)), a SwiGLU feed-forward (down(silu(gate(x)) * up(x))), and the
output projection tied to the token embedding (export/ writes output.weight only as a
copy of token_embd.weight with the BOS row zero, its -suppress-bos, on by default).

Output, in --out (each file at most --shard-mib MiB, for the GPU machine's $OUT):
  weights.json      config, training statistics, the tensor index and a logits reference
  weights-NNN.bin   the tensors (GGUF names, row-major = ggml layout), f16 or f32, one
                    byte stream split into shards; then the reference logits (f32)
The Go exporter (scripts/train-demo-model/export) turns them into the GGUF.
"""
import argparse
import datetime
import json
import math
import os
import platform
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


# ---------------------------------------------------------------------------- model


class Config:
    def __init__(self, vocab, dim, layers, heads, kv_heads, ffn, ctx, rope_base, eps, dropout=0.0):
        self.dropout = dropout
        self.vocab, self.dim, self.layers, self.heads, self.kv_heads = vocab, dim, layers, heads, kv_heads
        self.ffn, self.ctx, self.rope_base, self.eps = ffn, ctx, rope_base, eps
        assert dim % heads == 0 and heads % kv_heads == 0 and (dim // heads) % 2 == 0
        self.head_dim = dim // heads

    def to_dict(self):
        return dict(vocab=self.vocab, dim=self.dim, layers=self.layers, heads=self.heads,
                    kv_heads=self.kv_heads, ffn=self.ffn, ctx=self.ctx, rope_base=self.rope_base,
                    eps=self.eps)


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (xf * self.weight.float()).type_as(x)


def rope_tables(head_dim, n_pos, base, device=None):
    """cos and sin [n_pos, head_dim/2] of llama.cpp's rope: theta_i = pos * base^(-2i/d)."""
    inv = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    ang = torch.arange(n_pos, dtype=torch.float64)[:, None] * inv[None, :]
    return ang.cos().float().to(device), ang.sin().float().to(device)


def apply_rope(x, cos, sin):
    """x [B, T, H, D]: rotates the pairs (x[2i], x[2i+1]) (LLAMA_ROPE_TYPE_NORM)."""
    xf = x.float()
    x0, x1 = xf[..., 0::2], xf[..., 1::2]
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    out = torch.stack((x0 * c - x1 * s, x0 * s + x1 * c), dim=-1).flatten(-2)
    return out.type_as(x)


HAVE_SDPA = hasattr(F, "scaled_dot_product_attention")


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        d, hd = cfg.dim, cfg.head_dim
        self.attn_norm = RMSNorm(d, cfg.eps)
        self.wq = nn.Linear(d, cfg.heads * hd, bias=False)
        self.wk = nn.Linear(d, cfg.kv_heads * hd, bias=False)
        self.wv = nn.Linear(d, cfg.kv_heads * hd, bias=False)
        self.wo = nn.Linear(cfg.heads * hd, d, bias=False)
        self.ffn_norm = RMSNorm(d, cfg.eps)
        self.w_gate = nn.Linear(d, cfg.ffn, bias=False)
        self.w_up = nn.Linear(d, cfg.ffn, bias=False)
        self.w_down = nn.Linear(cfg.ffn, d, bias=False)
        self.drop = nn.Dropout(cfg.dropout)  # residual dropout, training only

    def forward(self, x, cos, sin):
        cfg = self.cfg
        B, T, _ = x.shape
        h = self.attn_norm(x)
        q = self.wq(h).view(B, T, cfg.heads, cfg.head_dim)
        k = self.wk(h).view(B, T, cfg.kv_heads, cfg.head_dim)
        v = self.wv(h).view(B, T, cfg.kv_heads, cfg.head_dim)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B, H, T, D]
        rep = cfg.heads // cfg.kv_heads
        if rep > 1:
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
        if HAVE_SDPA:
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(cfg.head_dim))
            mask = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
            att = att.masked_fill(mask, float("-inf")).float().softmax(-1).type_as(q)
            a = att @ v
        x = x + self.drop(self.wo(a.transpose(1, 2).reshape(B, T, cfg.heads * cfg.head_dim)))
        h = self.ffn_norm(x)
        return x + self.drop(self.w_down(F.silu(self.w_gate(h)) * self.w_up(h)))


class Model(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.tok_embd = nn.Embedding(cfg.vocab, cfg.dim)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.norm = RMSNorm(cfg.dim, cfg.eps)
        cos, sin = rope_tables(cfg.head_dim, cfg.ctx, cfg.rope_base)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.reset_parameters()

    def reset_parameters(self):
        std = 0.02
        for name, p in self.named_parameters():
            if p.dim() == 2:
                s = std / math.sqrt(2 * self.cfg.layers) if name.endswith(("wo.weight", "w_down.weight")) else std
                nn.init.normal_(p, 0.0, s)

    def forward(self, idx):
        T = idx.shape[1]
        if T > self.rope_cos.shape[0]:
            cos, sin = rope_tables(self.cfg.head_dim, T, self.cfg.rope_base, idx.device)
        else:
            cos, sin = self.rope_cos[:T], self.rope_sin[:T]
        x = self.tok_embd(idx)
        for b in self.blocks:
            x = b(x, cos, sin)
        x = self.norm(x)
        return F.linear(x, self.tok_embd.weight)  # tied output projection

    def gguf_tensors(self):
        """(GGUF name, tensor) in llama.cpp's order; torch's [out, in] row-major is
        ggml's [in, out]."""
        out = [("token_embd.weight", self.tok_embd.weight)]
        for i, b in enumerate(self.blocks):
            p = "blk.%d." % i
            out += [(p + "attn_norm.weight", b.attn_norm.weight), (p + "attn_q.weight", b.wq.weight),
                    (p + "attn_k.weight", b.wk.weight), (p + "attn_v.weight", b.wv.weight),
                    (p + "attn_output.weight", b.wo.weight), (p + "ffn_norm.weight", b.ffn_norm.weight),
                    (p + "ffn_gate.weight", b.w_gate.weight), (p + "ffn_up.weight", b.w_up.weight),
                    (p + "ffn_down.weight", b.w_down.weight)]
        out.append(("output_norm.weight", self.norm.weight))
        return out


# ---------------------------------------------------------------------------- data


def load_tokens(path):
    return torch.from_numpy(np.fromfile(path, dtype="<u2").astype(np.int64))


IGNORE = -100  # F.cross_entropy's default ignore_index


def targets(y, bos):
    """BOS is never a target: it only starts a document (a chapter or a snippet), so the
    model must not learn to emit it; a snippet's end is followed by BOS in the data, and
    a model that predicts BOS there jumps to a random verse when generating."""
    return y.masked_fill(y == bos, IGNORE)


class Batches:
    """Random windows of ctx+1 tokens; a fraction start at a BOS (a chapter's or
    snippet's beginning), the way a prompt does."""

    def __init__(self, data, ctx, batch, bos, bos_frac, device, seed):
        self.data, self.ctx, self.batch, self.bos_frac, self.bos = data.to(device), ctx, batch, bos_frac, bos
        self.g = torch.Generator(device=device)
        self.g.manual_seed(seed)
        starts = (data[: len(data) - ctx - 1] == bos).nonzero().flatten()
        self.bos_starts = starts.to(device)
        self.offsets = torch.arange(ctx + 1, device=device)
        self.device = device

    def next(self):
        n = len(self.data) - self.ctx - 1
        idx = torch.randint(0, n, (self.batch,), device=self.device, generator=self.g)
        if self.bos_frac > 0 and len(self.bos_starts) > 0:
            pick = torch.randint(0, len(self.bos_starts), (self.batch,), device=self.device, generator=self.g)
            use = torch.rand(self.batch, device=self.device, generator=self.g) < self.bos_frac
            idx = torch.where(use, self.bos_starts[pick], idx)
        w = self.data[idx[:, None] + self.offsets]
        return w[:, :-1], targets(w[:, 1:], self.bos)


@torch.no_grad()
def evaluate(model, data, ctx, batch, device, autocast, bos):
    """Mean loss (per target token, BOS excluded) over non-overlapping windows covering
    the whole split."""
    model.eval()
    n = (len(data) - 1) // ctx
    x = data[: n * ctx].view(n, ctx)
    y = targets(data[1 : n * ctx + 1].view(n, ctx), bos)
    total, count = 0.0, 0
    for i in range(0, n, batch):
        xb, yb = x[i : i + batch].to(device), y[i : i + batch].to(device)
        with autocast():
            logits = model(xb)
        total += F.cross_entropy(logits.float().view(-1, logits.shape[-1]), yb.reshape(-1), reduction="sum").item()
        count += int((yb != IGNORE).sum())
    model.train()
    return total / max(count, 1)


@torch.no_grad()
def greedy(model, prompt, n, device, autocast, pieces, eos):
    model.eval()
    toks = list(prompt)
    for _ in range(n):
        x = torch.tensor([toks[-model.cfg.ctx :]], device=device)
        with autocast():
            t = int(model(x)[0, -1].float().argmax())
        if t == eos:
            break
        toks.append(t)
    model.train()
    text = "".join(pieces[t] for t in toks[1:]) if pieces else " ".join(map(str, toks))
    return text.lstrip(" ")


# ---------------------------------------------------------------------------- export


def export(model, out, dtype, shard_bytes, info, check_tokens):
    """Writes weights.json and weights-NNN.bin (see the module doc)."""
    os.makedirs(out, exist_ok=True)
    np_dtype = {"f16": "<f2", "f32": "<f4"}[dtype]
    # A float32 CPU copy whose weights are rounded to the export type: it writes the
    # tensors and computes the reference logits that llama.cpp must reproduce.
    ref = Model(model.cfg)
    ref.load_state_dict({k: v.detach().float().cpu() for k, v in model.state_dict().items()})
    ref.eval()
    blobs, index, off = [], [], 0
    with torch.no_grad():
        for name, p in ref.gguf_tensors():
            a = p.detach().numpy().astype(np_dtype)
            p.copy_(torch.from_numpy(a.astype(np.float32)))
            b = a.tobytes()
            index.append(dict(name=name, shape=list(a.shape), dtype=dtype, offset=off, nbytes=len(b)))
            blobs.append(b)
            off += len(b)
        logits = ref(torch.tensor([check_tokens]))[0].float().numpy().astype("<f4")
    lb = logits.tobytes()
    check = dict(tokens=[int(t) for t in check_tokens], logits=dict(shape=list(logits.shape), dtype="f32",
                                                                    offset=off, nbytes=len(lb)))
    blobs.append(lb)
    off += len(lb)

    data = b"".join(blobs)
    shards = []
    for i in range(0, max(len(data), 1), shard_bytes):
        name = "weights-%03d.bin" % len(shards)
        with open(os.path.join(out, name), "wb") as f:
            f.write(data[i : i + shard_bytes])
        shards.append(dict(file=name, nbytes=len(data[i : i + shard_bytes])))
    doc = dict(format="llamago-kjv-demo-weights/1", config=model.cfg.to_dict(), shards=shards,
               tensors=index, check=check, **info)
    with open(os.path.join(out, "weights.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    return [s["file"] for s in shards]


# ---------------------------------------------------------------------------- main


class Log:
    def __init__(self, path):
        self.f = None
        if path:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            self.f = open(path, "a")

    def __call__(self, *a):
        s = " ".join(str(x) for x in a)
        print(s, flush=True)
        if self.f:
            self.f.write(s + "\n")
            self.f.flush()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=".device/kjv", help="prepare.sh's output: train.bin, val.bin, meta.json")
    ap.add_argument("--out", required=True, help="directory for weights.json and weights-NNN.bin")
    ap.add_argument("--log", default="", help="also append the log to this file")
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--ffn", type=int, default=768)
    ap.add_argument("--ctx", type=int, default=1024)
    ap.add_argument("--rope-base", type=float, default=10000.0)
    ap.add_argument("--eps", type=float, default=1e-5)
    ap.add_argument("--dropout", type=float, default=0.0, help="residual dropout while training")
    ap.add_argument("--batch", type=int, default=32, help="sequences per step")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--min-lr-frac", type=float, default=0.05, help="final learning rate / --lr")
    ap.add_argument("--warmup", type=int, default=200, help="warm-up steps")
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--bos-frac", type=float, default=0.25, help="fraction of windows starting at a BOS")
    ap.add_argument("--steps", type=int, default=0, help="training steps (0: as many as --minutes allows)")
    ap.add_argument("--minutes", type=float, default=8.5,
                    help="wall-clock budget from start to the end of training (the schedule follows it when --steps is 0)")
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--sample-every", type=int, default=2000, help="log greedy samples every n steps (0: only at the end)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--no-compile", action="store_true", help="do not use torch.compile")
    ap.add_argument("--export-dtype", choices=["f16", "f32"], default="f16")
    ap.add_argument("--shard-mib", type=float, default=15.0)
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()

    t_start = time.time()
    deadline = t_start + args.minutes * 60
    log = Log(args.log)
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    with open(os.path.join(args.data, "meta.json")) as f:
        meta = json.load(f)
    pieces = None
    pp = os.path.join(args.data, "pieces.json")
    if os.path.exists(pp):
        with open(pp) as f:
            pieces = json.load(f)
    train = load_tokens(os.path.join(args.data, "train.bin"))
    val = load_tokens(os.path.join(args.data, "val.bin"))
    cfg = Config(meta["n_vocab"], args.dim, args.layers, args.heads, args.kv_heads, args.ffn, args.ctx,
                 args.rope_base, args.eps, args.dropout)
    model = Model(cfg).to(dev)
    n_params = sum(p.numel() for p in model.parameters())
    n_embd_params = model.tok_embd.weight.numel()

    def autocast():
        if cuda:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return torch.autocast("cpu", enabled=False)

    gpu = torch.cuda.get_device_name(dev) if cuda else platform.processor() or "cpu"
    log("# KJV demo model training, %s" % datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"))
    log("# command: %s" % " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]))
    log("# torch %s, python %s, device %s (%s)" % (torch.__version__, platform.python_version(), dev, gpu))
    log("# data: train %d tokens, val %d tokens (%d chapters held out), vocab %s (%d)" % (
        len(train), len(val), len(meta.get("val_chapters", [])), meta.get("vocab"), cfg.vocab))
    log("# model: %s; %d parameters (%d in the tied embedding, %d in the layers)" % (
        json.dumps(cfg.to_dict()), n_params, n_embd_params, n_params - n_embd_params))

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    groups = [dict(params=decay, weight_decay=args.weight_decay), dict(params=no_decay, weight_decay=0.0)]
    try:
        opt = torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.95), eps=1e-8, fused=cuda)
    except (TypeError, RuntimeError):
        opt = torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.95), eps=1e-8)

    step_fn = model
    if cuda and not args.no_compile and hasattr(torch, "compile"):
        try:
            step_fn = torch.compile(model)
        except Exception as e:  # noqa: BLE001 - any failure: train uncompiled
            log("# torch.compile unavailable (%s): training uncompiled" % e)
            step_fn = model

    batches = Batches(train, args.ctx, args.batch, meta["bos"], args.bos_frac, dev, args.seed)
    val_dev = val

    def loss_of(fn, x, y):
        with autocast():
            logits = fn(x)
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), y.reshape(-1))

    # A first forward and backward pass compiles (when enabled); if compiling fails, train
    # in eager mode.
    x, y = batches.next()
    try:
        loss_of(step_fn, x, y).backward()
    except Exception as e:  # noqa: BLE001
        if step_fn is model:
            raise
        log("# torch.compile failed (%s: %s): training uncompiled" % (type(e).__name__, str(e).splitlines()[0][:200]))
        step_fn = model
        opt.zero_grad(set_to_none=True)
        loss_of(step_fn, x, y).backward()
    opt.zero_grad(set_to_none=True)

    t_train = time.time()
    log("# first step (compile) took %.1f s; budget %.1f min from start" % (t_train - t_start, args.minutes))
    tokens_per_step = args.batch * args.ctx
    min_lr = args.lr * args.min_lr_frac

    def progress(step):
        if args.steps:
            return step / args.steps
        return (time.time() - t_train) / max(deadline - t_train, 1e-9)

    def lr_at(step):
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        p = min(max(progress(step), 0.0), 1.0)
        return min_lr + 0.5 * (args.lr - min_lr) * (1 + math.cos(math.pi * p))

    history = []
    best_val = (float("inf"), 0)
    step, acc, smooth, last_t, last_step = 0, None, None, time.time(), 0
    while True:
        x, y = batches.next()
        loss = loss_of(step_fn, x, y)
        lr = lr_at(step)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        done = (args.steps and step >= args.steps) or (not args.steps and time.time() >= deadline) \
            or (args.steps and time.time() >= deadline)
        acc = loss.detach() if acc is None else acc + loss.detach()  # no GPU sync per step
        if step % args.eval_every == 0 or done:
            smooth = acc.item() / (step - last_step)  # mean training loss since the last report
            acc = None
            now = time.time()
            tps = (step - last_step) * tokens_per_step / max(now - last_t, 1e-9)
            vl = evaluate(model, val_dev, args.ctx, args.batch, dev, autocast, meta["bos"])
            if vl < best_val[0]:
                best_val = (vl, step)
            epochs = step * tokens_per_step / len(train)
            history.append(dict(step=step, train_loss=round(smooth, 4), val_loss=round(vl, 4), lr=lr,
                                epochs=round(epochs, 2), seconds=round(now - t_start, 1)))
            log("step %6d | train %.4f | val %.4f | lr %.2e | %.0f tok/s | epoch %.1f | %.0f s" % (
                step, smooth, vl, lr, tps, epochs, now - t_start))
            last_t, last_step = time.time(), step
            if args.sample_every and step % args.sample_every == 0 and not done:
                log("  sample: " + repr(greedy(model, meta["prompts"]["In the beginning"], 40, dev, autocast,
                                               pieces, meta["eos"])))
        if done:
            break

    t_end = time.time()
    train_loss = evaluate(model, train[: len(val) * 4], args.ctx, args.batch, dev, autocast, meta["bos"])
    val_loss = evaluate(model, val_dev, args.ctx, args.batch, dev, autocast, meta["bos"])
    log("# done: %d steps, %.1f epochs, %.1f s training (%.1f s total); train loss %.4f (first %d tokens), "
        "val loss %.4f (best %.4f at step %d)" % (step, step * tokens_per_step / len(train), t_end - t_train,
                                                  t_end - t_start, train_loss, len(val) * 4, val_loss,
                                                  best_val[0], best_val[1]))
    for name, prompt in meta["prompts"].items():
        log("# greedy %r: %r" % (name, greedy(model, prompt, 48, dev, autocast, pieces, meta["eos"])))

    info = dict(
        training=dict(
            steps=step, tokens_per_step=tokens_per_step, tokens_seen=step * tokens_per_step,
            epochs=round(step * tokens_per_step / len(train), 2), seconds=round(t_end - t_train, 1),
            final_train_loss=round(train_loss, 4), final_window_loss=round(smooth, 4),
            final_val_loss=round(val_loss, 4), best_val_loss=round(best_val[0], 4), best_val_step=best_val[1],
            date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
            device=gpu, torch=torch.__version__, command=" ".join(["train.py"] + sys.argv[1:]),
            hyper=dict(batch=args.batch, ctx=args.ctx, lr=args.lr, min_lr_frac=args.min_lr_frac,
                       warmup=args.warmup, weight_decay=args.weight_decay, dropout=args.dropout,
                       bos_frac=args.bos_frac,
                       seed=args.seed, optimizer="AdamW(0.9, 0.95), grad clip 1.0, cosine schedule",
                       loss="cross-entropy, BOS targets ignored",
                       precision="bf16 autocast" if cuda else "float32"),
            history=history),
        parameters=n_params, data=meta)
    # Check sequence: the first verses of a held-out chapter.
    check = val[: min(32, len(val))].tolist()
    files = export(model, args.out, args.export_dtype, int(args.shard_mib * (1 << 20)), info, check)
    log("# exported %s + weights.json to %s (%.1f s total)" % (", ".join(files), args.out, time.time() - t_start))


if __name__ == "__main__":
    main()
