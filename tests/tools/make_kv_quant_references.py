"""Exact references for the quantized latent cache (--kv-cache-dtype fp8|int8|bf16): why it exists is that a
quantized cache changes the logits, so "close to fp32" says little; this tool runs Hugging Face's fp32 forward with
the SAME fake quantization hooked into the latent (kernels/kv_quant.h, bit for bit), so mlarun must match it within
1e-3 (tests/model/test_mla_backends.cpp, KvQuantReference*). Runs on the CPU in seconds:

    python tests/tools/make_kv_quant_references.py tests/data/deepseek-v2-tiny tests/data/deepseek-v3-tiny \
        tests/data/shapes/*

Needs torch (with float8_e4m3fn) and a transformers release with the native DeepseekV2/DeepseekV3 classes, as
make_shape_fixtures.py. For each fixture folder it reads reference.safetensors' prompt.{i}.input_ids and writes
kv_quant_reference.safetensors beside it: prompt.{i}.input_ids (I64 [L]) and prompt.{i}.logits_{fp8,int8,bf16}
(F32 [L, vocab]: a full fp32 forward, every position, with every latent row quantized and dequantized), and
prompt.{i}.flip_sensitivity_{fp8,int8,bf16} (F32 [1]: how far those logits move when the latent is jittered by
fp32 noise before quantizing, i.e. whether a value sits on a rounding boundary; see flip_sensitivity).

The hook: the output of kv_a_layernorm (the latent c, kv_lora_rank values) goes through the tile quantizer; the
rotated k_pe is rounded to bf16 (patched into the modeling module's apply_rotary* functions, second output). The
row format: tiles of 128 latent values (the last may be shorter); fp8: scale = the power of two at or above
amax/448, values x/scale rounded to nearest even in e4m3 saturated to +-448; int8: scale = amax/127 (f32), values
round-half-even, clamped to +-127; amax 0 -> scale 1; a tile with NaN/inf reads back all NaN. bf16: every value
rounded to bf16.
"""
import os, sys
import torch
from safetensors.torch import load_file, save_file
import transformers
from transformers import AutoConfig, DeepseekV2ForCausalLM, DeepseekV3ForCausalLM

TILE = 128
DENORM_MIN = torch.finfo(torch.float32).smallest_normal * 2.0**-23  # 2^-149


def tile_scale(amax, kind):
    if kind == "fp8":
        t = amax / 448.0
        m, e = torch.frexp(t)
        s = torch.where(m == 0.5, t, torch.ldexp(torch.ones_like(t), e))
    else:
        s = amax / 127.0
    s = torch.where((s == 0) & (amax > 0), torch.full_like(s, DENORM_MIN), s)
    s = torch.where(amax == 0, torch.ones_like(s), s)
    return torch.where(torch.isfinite(amax), s, torch.full_like(s, float("nan")))


def fake_quantize_latent(c, kind):
    """c [..., R] float32 -> the same values as mlarun's cache reads them back."""
    if kind == "bf16":
        return c.to(torch.bfloat16).float()
    out = torch.empty_like(c)
    for first in range(0, c.shape[-1], TILE):
        t = c[..., first:first + TILE].float()
        amax = t.abs().amax(dim=-1, keepdim=True)  # NaN propagates; inf is inf
        amax = torch.where(torch.isnan(t).any(dim=-1, keepdim=True), torch.full_like(amax, float("nan")), amax)
        s = tile_scale(amax, kind)
        safe = torch.where(torch.isnan(s), torch.ones_like(s), s)
        x = t / safe
        if kind == "fp8":
            q = x.clamp(-448.0, 448.0).to(torch.float8_e4m3fn).float()
        else:
            q = torch.round(x).clamp(-127.0, 127.0)
        out[..., first:first + TILE] = torch.where(torch.isnan(s), torch.full_like(q, float("nan")), q * s)
    return out


def patched_forward(model, kind, ids):
    module = sys.modules[type(model.model.layers[0].self_attn).__module__]
    saved = {n: getattr(module, n) for n in dir(module) if n.startswith("apply_rotary")}
    hooks = []
    try:
        for n, f in saved.items():
            def wrap(*a, _f=f, **k):
                q, kk = _f(*a, **k)
                return q, kk.to(torch.bfloat16).float()  # the cache keeps k_pe in bf16
            setattr(module, n, wrap)
        for layer in model.model.layers:
            norm = layer.self_attn.kv_a_layernorm
            hooks.append(norm.register_forward_hook(lambda m, i, o: fake_quantize_latent(o, kind)))
        with torch.no_grad():
            return model(ids).logits[0].float().contiguous()
    finally:
        for h in hooks:
            h.remove()
        for n, f in saved.items():
            setattr(module, n, f)


def flip_sensitivity(model, kind, ids, exact, seeds=4, jitter=2e-7):
    """How far these logits move when the latent moves by fp32 noise (a relative 2e-7, below what two correct
    implementations differ by) before quantization: 0 unless some latent value sits on a rounding boundary, where
    either side is right. The test widens its 1e-3 to this where a prompt has such a value, and says so."""
    global fake_quantize_latent
    exact_quantizer = fake_quantize_latent
    worst = 0.0
    try:
        for seed in range(seeds):
            g = torch.Generator().manual_seed(seed)
            fake_quantize_latent = lambda c, k, _g=g: exact_quantizer(
                c * (1 + jitter * torch.randn(c.shape, generator=_g)), k)
            worst = max(worst, (patched_forward(model, kind, ids) - exact).abs().max().item())
    finally:
        fake_quantize_latent = exact_quantizer
    return torch.tensor([worst], dtype=torch.float32)


def build(folder):
    kind = AutoConfig.from_pretrained(folder).model_type
    cls = DeepseekV3ForCausalLM if kind == "deepseek_v3" else DeepseekV2ForCausalLM
    model = cls.from_pretrained(folder, dtype=torch.float32).eval()
    ref = load_file(os.path.join(folder, "reference.safetensors"))
    out = {}
    i = 0
    while f"prompt.{i}.input_ids" in ref:
        ids = ref[f"prompt.{i}.input_ids"]
        out[f"prompt.{i}.input_ids"] = ids.clone()
        # The control: without the hook this transformers must give the fixture's own fp32 logits, else its
        # DeepSeek classes compute something else and the references below would mean nothing.
        with torch.no_grad():
            plain = model(ids[None, :]).logits[0].float()
        drift = (plain - ref[f"prompt.{i}.logits"]).abs().max().item()
        if not drift < 1e-4:
            sys.exit(f"{folder}: prompt {i}: transformers {transformers.__version__} differs from the fixture's "
                     f"reference logits by {drift:.3g} (> 1e-4); not writing references")
        for k in ("fp8", "int8", "bf16"):
            out[f"prompt.{i}.logits_{k}"] = exact = patched_forward(model, k, ids[None, :])
            out[f"prompt.{i}.flip_sensitivity_{k}"] = flip_sensitivity(model, k, ids[None, :], exact)
        i += 1
    meta = {"transformers": transformers.__version__, "torch": torch.__version__,
            "format": "kernels/kv_quant.h: tiles of 128, fp8 pow2 scale / int8 amax/127, rope bf16"}
    save_file(out, os.path.join(folder, "kv_quant_reference.safetensors"), metadata=meta)
    print(folder, "->", i, "prompts")


if __name__ == "__main__":
    for folder in sys.argv[1:] or ["tests/data/deepseek-v2-tiny", "tests/data/deepseek-v3-tiny"]:
        build(folder)
