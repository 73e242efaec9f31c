#!/usr/bin/env python3
"""PyTorch anchors for the kernel workbenches, measured on the card the workbenches run on, in the same run.

Why: a kernel's number means something only beside what the obvious alternative does on the same GPU with the
same driver, clocks, torch and cuDNN; numbers copied from an issue or another card make every ratio a guess. So
launch/gpu_check.sh runs this script first and hands its files to the workbenches:

- flash prefill (kernels/bench/bench_flash_prefill.cu --anchors FILE): torch SDPA with the FLASH_ATTENTION (FA2)
  and CUDNN_ATTENTION backends on every shape the workbench times, bf16, TFLOP/s with FlashAttention's count
  2*B*H*S*S*(D+DV), halved when causal. Records {kind "prefill", backend "flash"|"cudnn", B, H, S, D, DV, causal,
  ms, tflops}; a backend that cannot run a shape (torch's FA2 needs D == DV) is recorded as absent: tflops null
  and "absent": the reason, never 0.
- MLA decode (kernels/bench/bench_mla_decode.cu --torch-anchors FILE): DeepSeek's reference absorbed decode
  (inference/model.py, attn_impl "absorb": scores = einsum(q_nope W_UK, kv_cache) + einsum(q_pe, pe_cache), times
  the softmax scale, softmax in fp32, out = einsum(probs, kv_cache)) on the workbench's single-query bf16 shapes,
  over contiguous per-sequence caches [B, T, 512] and [B, T, 64] as the reference keeps them. Timed from the
  absorbed query to the latent output (what the kernel computes). Records {kind "mla_decode_torch_ref", B, H, T,
  ms, cache_GBps, tflops}.
- decode step (beside `mlarun bench decode --config configs/config_236B.json --layers 2`): one decode step of a
  torch re-implementation of DeepSeek's inference/model.py (embedding, MLA absorbed decode with YaRN rope over
  `cached` tokens, DeepSeek's softmax gate with group-limited top-k, routed experts looped one by one after a
  bincount host sync, shared experts, RMSNorm, final norm and head) on config_236B cut to its first 2 layers, as
  DeepSeek's Transformer keeps them with n_layers = 2: layer 0 dense (n_dense_layers = 1), layer 1 MoE with all
  160 experts. Random bf16 weights. Records {kind "decode_step_torch_ref", config, layers, batch, cached, ms, note}.

Each anchor first checks itself on a small case on the same device and prints the check: SDPA per backend against
a manual fp32 softmax attention (relative L2 <= 1e-2 in bf16); the absorbed MLA einsums against plain
non-absorbed attention on the same random weights (<= 1e-2 in bf16, <= 1e-5 in fp32); the decode step, absorbed
against naive attention on a tiny config in fp32, its gate against a per-token brute force and its MoE against a
per-token sum. A failed check drops that anchor (recorded absent) and the exit status is 1.

Timing: CUDA events around each call, queued back to back (no sync between calls, so torch's launch latency hides
behind the previous call as in a serving loop), a few untimed warm-up calls, the median. On the CPU (--device
cpu) every anchor runs at tiny shapes derived from the real ones (the real ones need a GPU) and the backends that
need CUDA are recorded absent. --budget-s S: no new measurement starts S seconds after the script started; the
skipped ones are listed. The output files are valid JSON arrays from the start and are rewritten after every
measurement, so a killed run still leaves what it measured.

Usage: python3 kernels/bench/torch_anchors.py [--device cuda|cpu] [--quick] [--flash-out FILE] [--mla-out FILE]
           [--step-out FILE] [--all-out FILE] [--budget-s S] [--config FILE]
Exit: 0 ok, 1 a self-check failed, 2 usage/environment error.
"""
import argparse
import json
import math
import os
import re
import statistics
import sys
import time
import warnings

T0 = time.monotonic()
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The workbenches' shape lists, mirrored exactly (tests/tools/test_torch_anchors.py checks them against the .cu
# files). kernels/bench/bench_flash_prefill.cu, main(), "2) The anchor shapes": {b, h, s, d, dv, causal}; its
# --quick skips s > 8192.
FLASH_SHAPES = [(1, 16, 4096, 128, 128, True), (1, 16, 8192, 128, 128, True),
                (1, 16, 16384, 128, 128, True), (4, 16, 4096, 128, 128, False),
                (1, 128, 4096, 192, 128, True), (1, 16, 8192, 192, 128, True),
                (1, 16, 8192, 64, 64, True), (1, 16, 8192, 256, 256, True)]
FLASH_QUICK_MAX_S = 8192
# kernels/bench/bench_mla_decode.cu, run(), `shapes`: {name, batch, seq_len, heads, q_per_seq, block_size, varlen,
# format}. Its torch_anchor_ms() looks anchors up by (B, H, T) for q_per_seq 1, not varlen, bf16 cache only.
MLA_WORKBENCH_SHAPES = [
    ("tp8_b128_s8192_h16", 128, 8192, 16, 1, 64, False, "Bf16"),
    ("b64_s4096_h128", 64, 4096, 128, 1, 64, False, "Bf16"),
    ("mtp2_b128_s8192_h128", 128, 8192, 128, 2, 64, False, "Bf16"),
    ("tp8_b128_s8192_h16_bs16", 128, 8192, 16, 1, 16, False, "Bf16"),
    ("tp8_b128_s8192_h16_bs256", 128, 8192, 16, 1, 256, False, "Bf16"),
    ("b64_s4096_h128_bs16", 64, 4096, 128, 1, 16, False, "Bf16"),
    ("b64_s4096_h128_bs256", 64, 4096, 128, 1, 256, False, "Bf16"),
    ("tp8_b128_varlen8192_h16", 128, 8192, 16, 1, 64, True, "Bf16"),
    ("tp8_b128_s8192_h16_fp8", 128, 8192, 16, 1, 64, False, "Fp8"),
    ("tp8_b128_s8192_h16_int8", 128, 8192, 16, 1, 64, False, "Int8"),
]


def mla_anchor_shapes():
    """(B, H, T) of the workbench shapes that take a torch anchor, deduplicated, in workbench order."""
    out = []
    for _, b, t, h, q, _, varlen, fmt in MLA_WORKBENCH_SHAPES:
        if q == 1 and not varlen and fmt == "Bf16" and (b, h, t) not in out:
            out.append((b, h, t))
    return out


# The decode-step anchor: `mlarun bench decode` in launch/gpu_check.sh (236B cut to 2 layers, 4096 cached,
# batch 64) and the batch-1 point the issue quotes (DeepSeek inference/model.py on an H100: 45.3 ms / 6.5 ms).
STEP_CONFIG = "configs/config_236B.json"
STEP_LAYERS, STEP_CACHED, STEP_BATCHES = 2, 4096, (64, 1)

# DeepSeek's ModelArgs defaults for keys config_236B.json leaves out (inference/model.py).
MODEL_DEFAULTS = dict(max_seq_len=16384, original_seq_len=4096, rope_theta=10000.0, rope_factor=40.0, beta_fast=32,
                      beta_slow=1, mscale=1.0, n_expert_groups=1, n_limited_groups=1, route_scale=1.0,
                      q_lora_rank=0, score_func="softmax")
# The CPU stand-in for config_236B: the same structure (q LoRA, 576-wide latent, 8 expert groups keeping 3, 6
# active, 2 shared, 1 dense layer, route scale 16) at tiny widths.
TINY_236B = dict(vocab_size=512, dim=256, inter_dim=512, moe_inter_dim=64, n_layers=60, n_dense_layers=1,
                 n_heads=4, n_routed_experts=16, n_shared_experts=2, n_activated_experts=6, n_expert_groups=8,
                 n_limited_groups=3, route_scale=16.0, q_lora_rank=96, kv_lora_rank=512, qk_nope_head_dim=128,
                 qk_rope_head_dim=64, v_head_dim=128)

torch = F = None  # imported in main(), so the shape lists above can be imported without torch


class Run:
    """The results so far, the files they go to, and the budget."""

    def __init__(self, args, device):
        self.args, self.device = args, device
        self.flash, self.mla, self.step, self.checks, self.skipped, self.rows = [], [], [], [], [], []
        self.failed = False
        self.deadline = None if args.budget_s is None else T0 + args.budget_s

    def past_deadline(self):
        return self.deadline is not None and time.monotonic() > self.deadline

    def over_budget(self, what):
        if self.past_deadline():
            self.skipped.append(what)
            print(f"skip  {what}: past the --budget-s {self.args.budget_s:g} s budget", flush=True)
            return True
        return False

    def check(self, name, err, tol, extra=""):
        ok = err <= tol
        self.checks.append({"check": name, "rel_err": err, "tol": tol, "ok": ok})
        print(f"check {name:<58} rel err {err:.2e} (<= {tol:.0e}) {'ok' if ok else 'FAILED'}{extra}", flush=True)
        if not ok:
            self.failed = True
        return ok

    def note_check(self, name, why):
        self.checks.append({"check": name, "ok": None, "note": why})
        print(f"check {name:<58} n/a: {why}", flush=True)

    def row(self, anchor, shape, backend, ms=None, tflops=None, gbps=None, note=""):
        self.rows.append((anchor, shape, backend, ms, tflops, gbps, note))
        print(f"time  {anchor:<12} {shape:<34} {backend:<7} {fmt(ms, '%.3f ms'):>11} {fmt(tflops, '%.3g TF/s'):>11}"
              f" {fmt(gbps, '%.4g GB/s'):>10} {note}", flush=True)

    def write(self):
        a = self.args
        for path, recs in ((a.flash_out, self.flash), (a.mla_out, self.mla), (a.step_out, self.step)):
            if path:
                write_json(path, recs)
        if a.all_out:
            dev = self.device
            write_json(a.all_out, {
                "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
                "torch": torch.__version__, "cuda": torch.version.cuda,
                "cudnn": torch.backends.cudnn.version() if dev.type == "cuda" else None,
                "quick": bool(a.quick), "budget_s": a.budget_s, "checks": self.checks, "flash": self.flash,
                "mla": self.mla, "decode_step": self.step, "skipped": self.skipped})


def sig(x, digits=4):
    """x rounded to `digits` significant digits (a tiny CPU number stays non-zero)."""
    return float(f"{x:.{digits}g}")


def fmt(x, f):
    return "-" if x is None else f % x


def write_json(path, obj):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, allow_nan=False)
        f.write("\n")
    os.replace(tmp, path)


def rel_err(a, b):
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def median_ms(fn, warmup, reps, device):
    """Median wall time of fn() in ms: CUDA events around each call, queued back to back; perf_counter on the CPU."""
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(reps)]
        for s, e in ev:
            s.record()
            fn()
            e.record()
        torch.cuda.synchronize(device)
        return statistics.median(s.elapsed_time(e) for s, e in ev)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def no_tf32(fn, *args):
    """fn(*args) with fp32 matmuls in full fp32 on the GPU (the fp32 checks' 1e-5 tolerances)."""
    prev = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        return fn(*args)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = prev


def reps(run, kind):
    cuda = run.device.type == "cuda"
    table = {"flash": (3, 20, 10), "mla": (3, 30, 10), "step": (2, 10, 5)} if cuda else \
        {"flash": (1, 5, 3), "mla": (1, 5, 3), "step": (1, 3, 2)}
    w, n, nq = table[kind]
    return w, (nq if run.args.quick else n)


# ---- flash prefill: torch SDPA per backend ---------------------------------------------------------------------
def sdpa_backends():
    try:
        from torch.nn.attention import SDPBackend
    except ImportError:  # torch < 2.3: no per-backend selection
        return {"flash": None, "cudnn": None}
    return {"flash": getattr(SDPBackend, "FLASH_ATTENTION", None),
            "cudnn": getattr(SDPBackend, "CUDNN_ATTENTION", None)}


def sdpa(backend, q, k, v, causal):
    """Runs SDPA restricted to one backend; returns (out, None) or (None, why it cannot run)."""
    from torch.nn.attention import sdpa_kernel
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with sdpa_kernel(backend):
                return F.scaled_dot_product_attention(q, k, v, is_causal=causal), None
        except RuntimeError as e:  # torch says why in its warnings; keep their gist, then the error
            said = [re.sub(r"\s*\(Triggered internally at [^)]*\)\.?|^.*kernel not used because:?\s*", "",
                           str(w.message)).strip() for w in caught]
            return None, "; ".join([m for m in said if m][:2] + [str(e).split("\n")[0].strip()])[:300]


def manual_attention(q, k, v, causal):
    q, k, v = q.float(), k.float(), v.float()
    s = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    if causal:
        n = s.shape[-1]
        s = s.masked_fill(torch.ones(n, n, dtype=torch.bool, device=s.device).triu(1), float("-inf"))
    return s.softmax(-1) @ v


def flash_shapes(run):
    if run.device.type == "cuda":
        return [s for s in FLASH_SHAPES if not (run.args.quick and s[2] > FLASH_QUICK_MAX_S)]
    tiny = []  # the CPU: each shape shrunk (heads / 16, length / 32), head dims kept
    for b, h, s, d, dv, c in FLASH_SHAPES:
        t = (b, max(1, h // 16), max(64, s // (64 if run.args.quick else 32)), d, dv, c)
        if t not in tiny:
            tiny.append(t)
    return tiny


def flash_anchors(run):
    dev, bes = run.device, sdpa_backends()
    if any(bes.values()):
        from torch.nn.attention import sdpa_kernel
    usable = {}
    for name, be in bes.items():
        if be is None:
            usable[name] = f"this torch ({torch.__version__}) has no {name} SDPA backend"
        elif name == "cudnn" and dev.type != "cuda":
            usable[name] = "the cuDNN backend needs CUDA (not run on the CPU)"
        else:
            usable[name] = None
    # Self-check: each backend against a manual fp32 softmax attention on the same bf16 inputs (odd lengths,
    # causal and not, the DeepSeek 192/128 pair). A pair a backend cannot take is reported, not failed.
    g = torch.Generator(device=dev).manual_seed(11)
    ok = {}
    for name, be in bes.items():
        if run.past_deadline():  # no check for what will not be timed
            ok[name] = True
            continue
        if usable[name]:
            run.note_check(f"sdpa {name}", usable[name])
            continue
        ok[name] = True
        for b, h, s, d, dv, causal in ((1, 2, 100, 64, 64, True), (2, 3, 77, 128, 128, False),
                                       (1, 2, 100, 192, 128, True)):
            q, k = (torch.randn(b, h, s, d, device=dev, generator=g).bfloat16() for _ in range(2))
            v = torch.randn(b, h, s, dv, device=dev, generator=g).bfloat16()
            what = f"sdpa {name} bf16 b{b} h{h} s{s} d{d}/{dv} {'causal' if causal else 'full'}"
            out, why = sdpa(be, q, k, v, causal)
            if out is None:
                run.note_check(what, "backend cannot run it: " + why)
                continue
            ok[name] &= run.check(what, rel_err(out, manual_attention(q, k, v, causal)), 1e-2)
    for b, h, s, d, dv, causal in flash_shapes(run):
        shape = f"b{b} h{h} s{s} d{d}/{dv} {'causal' if causal else 'full'}"
        flops = 2.0 * b * h * s * s * (d + dv) / (2 if causal else 1)
        q, k, v = None, None, None
        for name, be in bes.items():
            rec = {"kind": "prefill", "backend": name, "B": b, "H": h, "S": s, "D": d, "DV": dv, "causal": causal,
                   "device": run.device.type}
            why = usable[name] or (None if ok.get(name) else "its self-check failed")
            if why is None and run.over_budget(f"prefill {name} {shape}"):
                continue
            if why is None:
                if q is None:
                    q, k = (torch.randn(b, h, s, d, device=dev, dtype=torch.bfloat16) for _ in range(2))
                    v = torch.randn(b, h, s, dv, device=dev, dtype=torch.bfloat16)
                out, why = sdpa(be, q, k, v, causal)
                del out
            if why is not None:
                rec.update(ms=None, tflops=None, absent=why)
                run.row("prefill", shape, name, note="absent: " + why[:70])
            else:
                w, n = reps(run, "flash")
                with sdpa_kernel(be):  # the bare call timed, the backend fixed around it
                    ms = median_ms(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal), w, n, dev)
                rec.update(ms=sig(ms), tflops=sig(flops / (ms * 1e-3) / 1e12))
                run.row("prefill", shape, name, ms, rec["tflops"])
            run.flash.append(rec)
            run.write()
        del q, k, v
        if dev.type == "cuda":
            torch.cuda.empty_cache()


# ---- MLA decode: DeepSeek's absorbed einsums ---------------------------------------------------------------------
def mla_absorbed_attention(q_abs, q_pe, kv, pe, scale):
    """DeepSeek inference/model.py MLA.forward, attn_impl "absorb", one query token (no mask): q_abs [B,1,H,512]
    (q_nope already absorbed by W_UK), q_pe [B,1,H,64], kv [B,T,512], pe [B,T,64] -> latent out [B,1,H,512]."""
    scores = (torch.einsum("bshc,btc->bsht", q_abs, kv) + torch.einsum("bshr,btr->bsht", q_pe, pe)) * scale
    scores = scores.softmax(dim=-1, dtype=torch.float32).type_as(q_abs)
    return torch.einsum("bsht,btc->bshc", scores, kv)


def mla_naive_attention(q_nope, q_pe, kv, pe, w_uk, w_uv, scale):
    """Plain attention on the up-projected keys and values (attn_impl "naive"): k = [kv W_UK^T, pe], v = kv W_UV^T."""
    h = q_nope.shape[2]
    k = torch.cat([torch.einsum("btc,hdc->bthd", kv, w_uk), pe[:, :, None, :].expand(-1, -1, h, -1)], dim=-1)
    v = torch.einsum("btc,hdc->bthd", kv, w_uv)
    q = torch.cat([q_nope, q_pe], dim=-1)
    p = (torch.einsum("bshd,bthd->bsht", q, k) * scale).softmax(dim=-1, dtype=torch.float32).type_as(q)
    return torch.einsum("bsht,bthd->bshd", p, v)


def deepseek_softmax_scale(cfg):
    scale = (cfg["qk_nope_head_dim"] + cfg["qk_rope_head_dim"]) ** -0.5
    if cfg["max_seq_len"] > cfg["original_seq_len"]:  # YaRN mscale, as model.py applies it
        m = 0.1 * cfg["mscale"] * math.log(cfg["rope_factor"]) + 1.0
        scale *= m * m
    return scale


def mla_check(run, scale):
    dev = run.device
    g = torch.Generator(device=dev).manual_seed(5)
    b, h, t = 2, 4, 50
    # q of std 0.3: logits of std ~0.6 after the scale, where the reference's bf16 scores (rounded before the
    # scale) cost ~4e-3 of the 1e-2 (unit q: up to 1.2e-2 over seeds); dropping the q_pe term costs 0.3
    q_nope = 0.3 * torch.randn(b, 1, h, 128, device=dev, generator=g)
    q_pe = 0.3 * torch.randn(b, 1, h, 64, device=dev, generator=g)
    kv = torch.randn(b, t, 512, device=dev, generator=g)
    pe = torch.randn(b, t, 64, device=dev, generator=g)
    wkv_b = torch.randn(h, 256, 512, device=dev, generator=g) / math.sqrt(512)
    ok = True
    for dt, tol in ((torch.float32, 1e-5), (torch.bfloat16, 1e-2)):
        x = [a.to(dt) for a in (q_nope, q_pe, kv, pe, wkv_b)]
        w_uk, w_uv = x[4][:, :128], x[4][:, 128:]
        q_abs = torch.einsum("bshd,hdc->bshc", x[0], w_uk)
        absorbed = torch.einsum("bshc,hdc->bshd", mla_absorbed_attention(q_abs, x[1], x[2], x[3], scale), w_uv)
        # the reference: non-absorbed attention in fp32 on the same (rounded) values
        f = [a.float() for a in x]
        naive = mla_naive_attention(f[0], f[1], f[2], f[3], f[4][:, :128], f[4][:, 128:], scale)
        ok &= run.check(f"mla absorbed vs naive {str(dt)[6:]} B{b} H{h} T{t}", rel_err(absorbed, naive), tol)
    return ok


def mla_anchors(run, scale):
    dev = run.device
    shapes = mla_anchor_shapes()
    ok = run.past_deadline() or no_tf32(mla_check, run, scale)  # no check for what will not be timed
    if dev.type != "cuda":  # tiny: batch / 32, heads / 8, tokens / 32
        shapes = [(max(1, b // 32), max(2, h // 8), max(64, t // 32)) for b, h, t in shapes]
    for b, h, t in shapes:
        shape = f"B{b} H{h} T{t}"
        rec = {"kind": "mla_decode_torch_ref", "B": b, "H": h, "T": t, "device": dev.type}
        if not ok:
            rec.update(ms=None, absent="its self-check failed")
            run.mla.append(rec)
            run.row("mla decode", shape, "einsum", note="absent: self-check failed")
            continue
        if run.over_budget(f"mla decode {shape}"):
            continue
        q_abs = torch.randn(b, 1, h, 512, device=dev, dtype=torch.bfloat16)
        q_pe = torch.randn(b, 1, h, 64, device=dev, dtype=torch.bfloat16)
        kv = torch.randn(b, t, 512, device=dev, dtype=torch.bfloat16)
        pe = torch.randn(b, t, 64, device=dev, dtype=torch.bfloat16)
        w, n = reps(run, "mla")
        ms = median_ms(lambda: mla_absorbed_attention(q_abs, q_pe, kv, pe, scale), w, n, dev)
        # the workbench's (FlashMLA's) formulas: cache read once + q + out; 2 * H * (576 + 512) FLOPs per token
        nbytes = b * t * 576 * 2 + b * h * (576 + 512) * 2
        flops = 2.0 * b * h * t * (576 + 512)
        rec.update(ms=sig(ms), cache_GBps=sig(nbytes / ms / 1e6), tflops=sig(flops / ms / 1e9))
        run.mla.append(rec)
        run.row("mla decode", shape, "einsum", ms, rec["tflops"], rec["cache_GBps"])
        run.write()
        del q_abs, q_pe, kv, pe
        if dev.type == "cuda":
            torch.cuda.empty_cache()


# ---- decode step: DeepSeek inference/model.py re-implemented -----------------------------------------------------
def precompute_freqs_cis(cfg, positions):
    """model.py precompute_freqs_cis (YaRN when max_seq_len > original_seq_len) for `positions` rows."""
    dim, base, factor = cfg["qk_rope_head_dim"], cfg["rope_theta"], cfg["rope_factor"]

    def corr_dim(rot):
        return dim * math.log(cfg["original_seq_len"] / (rot * 2 * math.pi)) / (2 * math.log(base))

    freqs = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    if cfg["max_seq_len"] > cfg["original_seq_len"]:
        low = max(math.floor(corr_dim(cfg["beta_fast"])), 0)
        high = min(math.ceil(corr_dim(cfg["beta_slow"])), dim - 1)
        high = high + 0.001 if low == high else high
        smooth = 1 - ((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
        freqs = freqs / factor * (1 - smooth) + freqs * smooth
    angles = torch.outer(torch.arange(positions, dtype=torch.float32), freqs)
    return torch.polar(torch.ones_like(angles), angles)


def apply_rotary_emb(x, freqs_cis):
    """model.py apply_rotary_emb: adjacent pairs as complex numbers, rotated in fp32."""
    dtype = x.dtype
    z = torch.view_as_complex(x.float().view(*x.shape[:-1], -1, 2))
    y = torch.view_as_real(z * freqs_cis.view(1, z.size(1), 1, z.size(-1))).flatten(3)
    return y.to(dtype)


class DecodeStep:
    """DeepSeek's Transformer (inference/model.py, world size 1, bf16 gemm) cut to `layers` layers, random weights,
    with contiguous per-sequence latent caches [batch, cached + 1, 512] / [.., 64] (the new token's row at the end)."""

    def __init__(self, cfg, layers, device, dtype, seed=0):
        self.c, self.dev, self.dt = cfg, device, dtype
        gen = torch.Generator(device=device).manual_seed(seed)
        c, H = cfg, cfg["n_heads"]

        def w(*shape, std=None):  # normal / sqrt(fan_in), made on the device
            x = torch.empty(*shape, device=device, dtype=dtype)
            return x.normal_(0.0, std if std is not None else 1.0 / math.sqrt(shape[-1]), generator=gen)

        def ones(n):
            return torch.ones(n, device=device, dtype=dtype)

        dim, qk = c["dim"], c["qk_nope_head_dim"] + c["qk_rope_head_dim"]
        self.embed, self.norm, self.head = w(c["vocab_size"], dim, std=1.0), ones(dim), w(c["vocab_size"], dim)
        self.layers = []
        for i in range(layers):
            r = c["kv_lora_rank"]
            L = {"attn_norm": ones(dim), "ffn_norm": ones(dim), "wkv_a": w(r + c["qk_rope_head_dim"], dim),
                 "kv_norm": ones(r), "wkv_b": w(H * (c["qk_nope_head_dim"] + c["v_head_dim"]), r),
                 "wo": w(dim, H * c["v_head_dim"])}
            if c["q_lora_rank"] > 0:
                L.update(wq_a=w(c["q_lora_rank"], dim), q_norm=ones(c["q_lora_rank"]), wq_b=w(H * qk, c["q_lora_rank"]))
            else:
                L.update(wq=w(H * qk, dim))
            if i < c["n_dense_layers"]:
                L.update(w1=w(c["inter_dim"], dim), w2=w(dim, c["inter_dim"]), w3=w(c["inter_dim"], dim))
            else:
                E, I, S = c["n_routed_experts"], c["moe_inter_dim"], c["n_shared_experts"] * c["moe_inter_dim"]
                L.update(gate=w(E, dim), e1=w(E, I, dim), e2=w(E, dim, I), e3=w(E, I, dim),
                         s1=w(S, dim), s2=w(dim, S), s3=w(S, dim))
            self.layers.append(L)
        self.freqs_cis = None
        self.scale = deepseek_softmax_scale(c)
        self.attn_impl = "absorb"

    @staticmethod
    def weight_bytes(c, layers, elem=2):
        H, qk = c["n_heads"], c["qk_nope_head_dim"] + c["qk_rope_head_dim"]
        dim, n = c["dim"], 2 * c["vocab_size"] * c["dim"] + c["dim"]
        for i in range(layers):
            n += (c["kv_lora_rank"] + c["qk_rope_head_dim"]) * dim + H * (c["qk_nope_head_dim"] + c["v_head_dim"]) * \
                c["kv_lora_rank"] + dim * H * c["v_head_dim"] + 2 * dim + c["kv_lora_rank"]
            n += (c["q_lora_rank"] * (dim + H * qk + 1)) if c["q_lora_rank"] else H * qk * dim
            n += 3 * c["inter_dim"] * dim if i < c["n_dense_layers"] else DecodeStep.moe_bytes(c, 1) // elem
        return n * elem

    @staticmethod
    def moe_bytes(c, layers, elem=2):
        E, I, S = c["n_routed_experts"], c["moe_inter_dim"], c["n_shared_experts"] * c["moe_inter_dim"]
        return layers * elem * (E * c["dim"] + 3 * E * I * c["dim"] + 3 * S * c["dim"])

    def alloc_caches(self, batch, cached, gen_seed=1):
        c, g = self.c, torch.Generator(device=self.dev).manual_seed(gen_seed)
        for L in self.layers:  # the latent is post-RMSNorm (unit RMS), the rope key of unit size too
            for name, width in (("kv_cache", c["kv_lora_rank"]), ("pe_cache", c["qk_rope_head_dim"])):
                L[name] = torch.empty(batch, cached + 1, width, device=self.dev, dtype=self.dt).normal_(generator=g)
        self.freqs_cis = precompute_freqs_cis(c, max(c["max_seq_len"], cached + 1)).to(self.dev)

    def rms(self, x, wt):  # model.py RMSNorm: F.rms_norm (torch >= 2.4), else its composite
        if hasattr(F, "rms_norm"):
            return F.rms_norm(x, (x.size(-1),), wt, 1e-6)
        return (x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-6)).type_as(x) * wt

    def attention(self, L, x, start_pos, freqs_cis):
        c, H = self.c, self.c["n_heads"]
        nope, rope, vd, r = c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"], c["kv_lora_rank"]
        bsz, seqlen, _ = x.shape
        end_pos = start_pos + seqlen
        q = F.linear(self.rms(F.linear(x, L["wq_a"]), L["q_norm"]), L["wq_b"]) if "wq_a" in L else F.linear(x, L["wq"])
        q_nope, q_pe = q.view(bsz, seqlen, H, nope + rope).split([nope, rope], dim=-1)
        q_pe = apply_rotary_emb(q_pe, freqs_cis)
        kv, k_pe = F.linear(x, L["wkv_a"]).split([r, rope], dim=-1)
        k_pe = apply_rotary_emb(k_pe.unsqueeze(2), freqs_cis)
        wkv_b = L["wkv_b"].view(H, -1, r)
        if self.attn_impl == "absorb":
            q_nope = torch.einsum("bshd,hdc->bshc", q_nope, wkv_b[:, :nope])
            L["kv_cache"][:bsz, start_pos:end_pos] = self.rms(kv, L["kv_norm"])
            L["pe_cache"][:bsz, start_pos:end_pos] = k_pe.squeeze(2)
            o = mla_absorbed_attention(q_nope, q_pe, L["kv_cache"][:bsz, :end_pos], L["pe_cache"][:bsz, :end_pos],
                                       self.scale)
            o = torch.einsum("bshc,hdc->bshd", o, wkv_b[:, -vd:])
        else:  # "naive": per-head keys and values from the (same) latent cache rows, for the self-check
            L["kv_cache"][:bsz, start_pos:end_pos] = self.rms(kv, L["kv_norm"])
            L["pe_cache"][:bsz, start_pos:end_pos] = k_pe.squeeze(2)
            o = mla_naive_attention(q_nope, q_pe, L["kv_cache"][:bsz, :end_pos], L["pe_cache"][:bsz, :end_pos],
                                    wkv_b[:, :nope], wkv_b[:, -vd:], self.scale)
        return F.linear(o.flatten(2), L["wo"])

    def gate(self, L, x):
        """model.py Gate.forward for softmax scoring without bias (V2): softmax in fp32, groups ranked by their
        best expert, the top n_limited_groups kept, top-k of the rest, weights from the unmasked scores times
        route_scale."""
        c = self.c
        scores = F.linear(x, L["gate"]).softmax(dim=-1, dtype=torch.float32)
        original = scores
        if c["n_expert_groups"] > 1:
            s = scores.view(x.size(0), c["n_expert_groups"], -1)
            idx = s.amax(dim=-1).topk(c["n_limited_groups"], dim=-1)[1]
            mask = s.new_ones(x.size(0), c["n_expert_groups"], dtype=torch.bool).scatter_(1, idx, False)
            scores = s.masked_fill(mask.unsqueeze(-1), float("-inf")).flatten(1)  # model.py: in place, same result
        indices = torch.topk(scores, c["n_activated_experts"], dim=-1)[1]
        weights = original.gather(1, indices) * c["route_scale"]
        return weights.type_as(x), indices

    @staticmethod
    def mlp(x, w1, w2, w3):
        return F.linear(F.silu(F.linear(x, w1)) * F.linear(x, w3), w2)

    def moe(self, L, x):
        """model.py MoE.forward at world size 1: experts looped one by one over the tokens routed to them."""
        shape = x.size()
        x = x.view(-1, self.c["dim"])
        weights, indices = self.gate(L, x)
        y = torch.zeros_like(x)
        counts = torch.bincount(indices.flatten(), minlength=self.c["n_routed_experts"]).tolist()
        for i in range(self.c["n_routed_experts"]):
            if counts[i] == 0:
                continue
            idx, top = torch.where(indices == i)
            y[idx] += self.mlp(x[idx], L["e1"][i], L["e2"][i], L["e3"][i]) * weights[idx, top, None]
        z = self.mlp(x, L["s1"], L["s2"], L["s3"])
        return (y + z).view(shape)

    def forward(self, tokens, start_pos):
        h = F.embedding(tokens, self.embed)
        freqs_cis = self.freqs_cis[start_pos:start_pos + tokens.size(1)]
        for i, L in enumerate(self.layers):
            h = h + self.attention(L, self.rms(h, L["attn_norm"]), start_pos, freqs_cis)
            x = self.rms(h, L["ffn_norm"])
            h = h + (self.mlp(x, L["w1"], L["w2"], L["w3"]) if "w1" in L else self.moe(L, x))
        return F.linear(self.rms(h, self.norm)[:, -1], self.head)


def step_check(run):
    """On a tiny config (the 236B structure) in fp32: absorbed vs naive attention through the whole step, the gate
    against a per-token brute force, the MoE against a per-token sum over the chosen experts."""
    dev = run.device
    cfg = dict(MODEL_DEFAULTS, **TINY_236B)
    m = DecodeStep(cfg, 2, dev, torch.float32, seed=3)
    b, cached = 3, 40
    m.alloc_caches(b, cached, gen_seed=4)
    tokens = torch.randint(0, cfg["vocab_size"], (b, 1), generator=torch.Generator().manual_seed(6)).to(dev)
    saved = [(L["kv_cache"].clone(), L["pe_cache"].clone()) for L in m.layers]
    absorbed = m.forward(tokens, cached)
    for L, (kv, pe) in zip(m.layers, saved):
        L["kv_cache"], L["pe_cache"] = kv, pe
    m.attn_impl = "naive"
    naive = m.forward(tokens, cached)
    m.attn_impl = "absorb"
    ok = run.check(f"decode step absorbed vs naive fp32 tiny-236B B{b} T{cached}", rel_err(absorbed, naive), 1e-5)
    # the gate, brute force per token
    L = m.layers[1]
    x = torch.randn(17, cfg["dim"], device=dev, generator=torch.Generator(device=dev).manual_seed(7))
    weights, indices = m.gate(L, x)
    probs = F.linear(x, L["gate"]).softmax(-1).cpu()
    G, per = cfg["n_expert_groups"], cfg["n_routed_experts"] // cfg["n_expert_groups"]
    bad = 0
    for t in range(x.size(0)):
        p = probs[t].tolist()
        groups = sorted(range(G), key=lambda gi: -max(p[gi * per:(gi + 1) * per]))[:cfg["n_limited_groups"]]
        allowed = [e for gi in groups for e in range(gi * per, (gi + 1) * per)]
        want = sorted(sorted(allowed, key=lambda e: -p[e])[:cfg["n_activated_experts"]])
        got = sorted(indices[t].tolist())
        bad += want != got or abs(float(weights[t].sum()) - cfg["route_scale"] * sum(p[e] for e in want)) > 1e-4
    ok &= run.check(f"decode step gate (group-limited top-k) vs brute force, {x.size(0)} tokens",
                    float(bad) / x.size(0), 0.0)
    # the MoE, per token
    want = torch.stack([sum(weights[t, k] * m.mlp(x[t], L["e1"][e], L["e2"][e], L["e3"][e])
                            for k, e in enumerate(indices[t].tolist())) + m.mlp(x[t], L["s1"], L["s2"], L["s3"])
                        for t in range(x.size(0))])
    ok &= run.check("decode step MoE (experts looped) vs per-token sum, fp32", rel_err(m.moe(L, x), want), 1e-5)
    return ok


def step_anchors(run):
    dev = run.device
    ok = run.past_deadline() or no_tf32(step_check, run)  # no check for what will not be timed
    with open(os.path.join(ROOT, run.args.config)) as f:
        file_cfg = json.load(f)
    cfg_name = os.path.basename(run.args.config).rsplit(".", 1)[0]
    if dev.type == "cuda":
        cfg, layers, cached, batches = dict(MODEL_DEFAULTS, **file_cfg), STEP_LAYERS, STEP_CACHED, STEP_BATCHES
        label = run.args.config
    else:
        cfg, layers, cached, batches = dict(MODEL_DEFAULTS, **TINY_236B), STEP_LAYERS, 64, (4, 1)
        label = f"{run.args.config} (CPU: tiny widths, same structure)"
    moe_layers = [i for i in range(layers) if i >= cfg["n_dense_layers"]]
    gib = 1 << 30
    wbytes = DecodeStep.weight_bytes(cfg, layers)
    note = (f"layers 0..{layers - 1} as model.py keeps them with n_layers={layers}: "
            f"{layers - len(moe_layers)} dense (n_dense_layers={cfg['n_dense_layers']}), MoE layer(s) {moe_layers} "
            f"with all {cfg['n_routed_experts']} experts ({cfg['n_activated_experts']} active, groups "
            f"{cfg['n_expert_groups']} keep {cfg['n_limited_groups']}, {cfg['n_shared_experts']} shared); "
            f"bf16 weights {wbytes / gib:.1f} GiB incl. embedding and head (routed experts "
            f"{DecodeStep.moe_bytes(cfg, 1) / gib:.1f} GiB per MoE layer, {DecodeStep.moe_bytes(cfg, 2) / gib:.1f} "
            f"GiB for 2; 2 MoE layers' model {DecodeStep.weight_bytes(dict(cfg, n_dense_layers=0), 2) / 1e9:.1f} GB "
            f"{'fits' if DecodeStep.weight_bytes(dict(cfg, n_dense_layers=0), 2) < 70e9 else 'does not fit'} an "
            f"80 GB card); eager torch, experts looped after a bincount host sync; "
            f"latent caches contiguous per sequence")
    if dev.type == "cuda":
        free, _ = torch.cuda.mem_get_info(dev)
        need = wbytes + max(batches) * (cached + 1) * 576 * 2 * layers + (2 << 30)
        if need > free:
            why = f"needs {need / gib:.1f} GiB, {free / gib:.1f} GiB free"
            for bsz in batches:
                run.step.append({"kind": "decode_step_torch_ref", "config": label, "layers": layers, "batch": bsz,
                                 "cached": cached, "ms": None, "absent": why, "note": note})
            run.row("decode step", f"{cfg_name}/{layers}L", "torch", note="absent: " + why)
            run.write()
            return
    if not ok:
        for bsz in batches:
            run.step.append({"kind": "decode_step_torch_ref", "config": label, "layers": layers, "batch": bsz,
                             "cached": cached, "ms": None, "absent": "its self-check failed", "note": note})
        run.write()
        return
    if run.over_budget(f"decode step {cfg_name}/{layers} layers (weights)"):
        for bsz in batches:
            run.skipped.append(f"decode step B{bsz} T{cached}")
        return
    t = time.monotonic()
    model = DecodeStep(cfg, layers, dev, torch.bfloat16, seed=0)
    print(f"decode step: {cfg_name} cut to {layers} layers built in {time.monotonic() - t:.1f} s; {note}", flush=True)
    for bsz in batches:
        shape = f"{cfg_name}/{layers}L B{bsz} T{cached}"
        if run.over_budget(f"decode step {shape}"):
            continue
        model.alloc_caches(bsz, cached)
        tokens = torch.randint(0, cfg["vocab_size"], (bsz, 1), device=dev)
        w, n = reps(run, "step")
        ms = median_ms(lambda: model.forward(tokens, cached), w, n, dev)
        rec = {"kind": "decode_step_torch_ref", "config": label, "layers": layers, "batch": bsz, "cached": cached,
               "ms": sig(ms), "tokens_per_s": sig(bsz / ms * 1e3), "device": dev.type, "note": note}
        run.step.append(rec)
        run.row("decode step", shape, "torch", ms, note=f"{rec['tokens_per_s']:.0f} tok/s")
        run.write()
    del model
    if dev.type == "cuda":
        torch.cuda.empty_cache()


def main(argv=None):
    global torch, F
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=["cuda", "cpu"], default=None, help="default: cuda when available")
    p.add_argument("--quick", action="store_true", help="fewer repetitions; on CUDA the workbench's --quick shapes")
    p.add_argument("--flash-out", help="bench_flash_prefill --anchors file")
    p.add_argument("--mla-out", help="bench_mla_decode --torch-anchors file")
    p.add_argument("--step-out", help="decode-step anchor records")
    p.add_argument("--all-out", help="everything in one JSON object (device, versions, checks, skips)")
    p.add_argument("--budget-s", type=float, default=None, help="start no measurement after S s (from the start)")
    p.add_argument("--config", default=STEP_CONFIG, help="the decode step's config (relative to the repo root)")
    p.add_argument("--only", default="flash,mla,step", help="comma list of anchors: flash, mla, step")
    args = p.parse_args(argv)
    for path in (args.flash_out, args.mla_out, args.step_out):
        if path:
            write_json(path, [])  # valid (empty) files whatever happens next
    try:
        import torch as _torch
        import torch.nn.functional as _F
    except ImportError as e:
        print(f"torch_anchors: cannot import torch ({e}); wrote empty anchor files", file=sys.stderr)
        return 2
    torch, F = _torch, _F
    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        print("torch_anchors: --device cuda but torch sees no CUDA device; wrote empty anchor files", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    run = Run(args, device)
    run.write()
    what = set(args.only.split(","))
    desc = (torch.cuda.get_device_name(device) + f", cuDNN {torch.backends.cudnn.version()}"
            if device.type == "cuda" else
            f"CPU, {torch.get_num_threads()} threads (tiny shapes: the real ones need a GPU)")
    print(f"torch_anchors: torch {torch.__version__} on {desc}; quick {args.quick}; budget "
          f"{'none' if args.budget_s is None else '%g s' % args.budget_s}", flush=True)
    with torch.inference_mode():
        if "flash" in what:
            flash_anchors(run)
        if "mla" in what:
            with open(os.path.join(ROOT, args.config)) as f:  # 192^-0.5 x the YaRN mscale^2 of the config
                mla_anchors(run, deepseek_softmax_scale(dict(MODEL_DEFAULTS, **json.load(f))))
        if "step" in what:
            step_anchors(run)
    run.write()
    print(f"\n{'anchor':<12} {'shape':<34} {'backend':<7} {'ms':>9} {'TFLOP/s':>8} {'GB/s':>7}  note")
    for a, s, b, ms, tf, gb, note in run.rows:
        print(f"{a:<12} {s:<34} {b:<7} {fmt(ms, '%.3f'):>9} {fmt(tf, '%.4g'):>8} {fmt(gb, '%.4g'):>7}  {note}")
    n_checks = sum(1 for c in run.checks if c["ok"] is not None)
    n_bad = sum(1 for c in run.checks if c["ok"] is False)
    if run.skipped:
        print(f"skipped (budget {args.budget_s:g} s): " + "; ".join(run.skipped))
    steps = ", ".join(f"B{r['batch']} {r['ms']:.1f} ms" for r in run.step if r.get("ms") is not None)
    print(f"NOTE: torch anchors on {device.type}: {sum(r.get('tflops') is not None for r in run.flash)} sdpa, "
          f"{sum(r.get('ms') is not None for r in run.mla)} mla, decode step [{steps}]; "
          f"checks {n_checks - n_bad}/{n_checks} ok; {len(run.skipped)} skipped ({time.monotonic() - T0:.0f} s)")
    return 1 if run.failed else 0


if __name__ == "__main__":
    sys.exit(main())
