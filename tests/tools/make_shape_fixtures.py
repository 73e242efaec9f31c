"""Tiny DeepSeek-V2/V3 checkpoints of shapes the fixtures tests/data/deepseek-v2-tiny and deepseek-v3-tiny do not
cover, with Hugging Face reference outputs, for the runtime's parity tests (tests/model/test_model_parity.cpp).
Runs on the CPU in seconds:

    python tests/tools/make_shape_fixtures.py tests/data/shapes
    python tests/tools/make_shape_fixtures.py --bf16-error tests/data/shapes   # only (re)write the bf16 error

Each reference's metadata holds bf16_vs_fp32_max_abs, as the two fixtures' do: the same checkpoint run by
transformers in bf16 against the fp32 reference, max |logit difference| over every prompt position and every greedy
step (teacher-forced); the GPU parity tests allow twice that. --bf16-error adds it to existing fixtures and leaves
their tensors as they are.

Needs Python 3 with torch and a transformers release that has the native DeepseekV2/DeepseekV3 classes (pip; the
runtime itself never uses them). Each variant folder it writes holds:
  config.json            the classic hub field names (rope_scaling, scoring_func, topk_method, ...)
  model.safetensors      random F32 weights from a fixed seed
  reference.safetensors  per prompt i: prompt.{i}.input_ids (I64 [L]); prompt.{i}.logits (F32 [L, vocab], a full
                         fp32 forward, every position); prompt.{i}.greedy (I64 [N], the greedy continuation decoded
                         with the KV cache); prompt.{i}.greedy_logits (F32 [N, vocab], the logits of those steps);
                         its metadata records the versions and what the variant exercises.
These are the names the two fixtures' reference.safetensors use (they also hold prompt.{i}.logits_bf16), so the
same test code reads all of them.
"""
import json, os, sys
import torch
from safetensors.torch import save_file
from transformers import DeepseekV2Config, DeepseekV3Config, DeepseekV2ForCausalLM, DeepseekV3ForCausalLM

BASE = dict(vocab_size=160, hidden_size=64, intermediate_size=96, moe_intermediate_size=32, num_hidden_layers=3,
            first_k_dense_replace=1, num_attention_heads=4, q_lora_rank=48, kv_lora_rank=32, qk_nope_head_dim=16,
            qk_rope_head_dim=8, v_head_dim=16, n_routed_experts=8, n_shared_experts=1, num_experts_per_tok=2,
            n_group=1, topk_group=1, routed_scaling_factor=1.0, norm_topk_prob=False, max_position_embeddings=256,
            rope_scaling=dict(type="yarn", factor=4.0, original_max_position_embeddings=32, beta_fast=32,
                              beta_slow=1, mscale=0.707, mscale_all_dim=0.707))

# name -> (kind, overrides, what it exercises)
VARIANTS = {
    "v2-noqlora-greedy-vdim": ("v2", dict(q_lora_rank=None, topk_method="greedy", num_attention_heads=5, hidden_size=80,
                                          v_head_dim=24, n_shared_experts=2, scoring_func="softmax"),
                               "q_proj (no q compression), greedy routing, 5 heads, v 24 != nope 16, 2 shared"),
    "v2-grouped-norope": ("v2", dict(topk_method="group_limited_greedy", n_group=4, topk_group=2, n_routed_experts=8,
                                     num_experts_per_tok=3, routed_scaling_factor=16.0, rope_scaling=None,
                                     first_k_dense_replace=0, scoring_func="softmax"),
                          "group-limited greedy, routed scale 16, plain RoPE (no rope_scaling), every layer MoE"),
    "v3-nonorm-onegroup": ("v3", dict(topk_method="noaux_tc", scoring_func="sigmoid", norm_topk_prob=False,
                                      n_group=1, topk_group=1, num_attention_heads=3, hidden_size=48, v_head_dim=12, q_lora_rank=None,
                                      routed_scaling_factor=2.5, first_k_dense_replace=2, num_hidden_layers=4,
                                      rope_scaling=dict(type="yarn", factor=8.0, original_max_position_embeddings=32,
                                                        beta_fast=32, beta_slow=1, mscale=1.0, mscale_all_dim=0.707)),
                           "noaux_tc without renormalisation, one group, 3 heads, v 12, no q compression, mscale != mscale_all_dim"),
    "v3-grouped-noshared": ("v3", dict(topk_method="noaux_tc", scoring_func="sigmoid", norm_topk_prob=True,
                                       n_group=4, topk_group=3, n_routed_experts=16, num_experts_per_tok=4,
                                       n_shared_experts=0, num_attention_heads=8, qk_nope_head_dim=8,
                                       qk_rope_head_dim=16, v_head_dim=8,
                                       rope_scaling=dict(type="yarn", factor=2.0, original_max_position_embeddings=64)),
                            "noaux_tc 4 groups keep 3, no shared experts, rope 16 > nope 8, yarn without mscale keys"),
    "v3-rope-halves": ("v3", dict(topk_method="noaux_tc", scoring_func="sigmoid", norm_topk_prob=True, n_group=2,
                                  topk_group=1, rope_interleave=False),
                       "rope_interleave false: RoPE rotates the halves of the stored layout (NeoX style)"),
}

def classic_config(kind, c):
    keys = ["vocab_size", "hidden_size", "intermediate_size", "moe_intermediate_size", "num_hidden_layers",
            "num_attention_heads", "n_shared_experts", "n_routed_experts", "num_experts_per_tok",
            "routed_scaling_factor", "kv_lora_rank", "q_lora_rank", "qk_rope_head_dim", "qk_nope_head_dim",
            "v_head_dim", "topk_method", "n_group", "topk_group", "first_k_dense_replace", "norm_topk_prob",
            "scoring_func", "max_position_embeddings", "rope_scaling", "rope_interleave"]
    cfg = dict(architectures=[f"Deepseek{kind.upper()}ForCausalLM"], model_type=f"deepseek_{kind}")
    cfg.update({k: c[k] for k in keys if k in c})
    cfg.update(num_key_value_heads=c["num_attention_heads"], moe_layer_freq=1, hidden_act="silu", rms_norm_eps=1e-6,
               rope_theta=10000.0, attention_bias=False, attention_dropout=0.0, tie_word_embeddings=False,
               bos_token_id=0, eos_token_id=1, torch_dtype="float32", use_cache=True, initializer_range=0.02)
    return cfg

def hf_model(kind, c):
    kw = {k: v for k, v in classic_config(kind, c).items()
          if k not in ("architectures", "model_type", "moe_layer_freq", "scoring_func", "torch_dtype", "rope_scaling")}
    if c.get("rope_scaling"):
        rs = dict(c["rope_scaling"]); rs["rope_type"] = rs.pop("type"); rs["rope_theta"] = 10000.0
        kw["rope_parameters"] = rs
        kw.pop("rope_theta")
    if kind == "v3":
        kw.pop("topk_method", None)
        return DeepseekV3ForCausalLM(DeepseekV3Config(**kw))
    return DeepseekV2ForCausalLM(DeepseekV2Config(**kw))

def randomize(model, gen):
    with torch.no_grad():
        for name, p in list(model.named_parameters()) + list(model.named_buffers()):
            if "inv_freq" in name:
                continue
            if name.endswith("e_score_correction_bias"):
                p.copy_(0.05 * torch.randn(p.shape, generator=gen))
            elif p.dim() == 1:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            elif "embed_tokens" in name:
                p.copy_(torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.08 * torch.randn(p.shape, generator=gen))

def build(out_root, name, kind, overrides, note, seed, prompt_lens=(1, 6, 23), new_tokens=6):
    c = dict(BASE); c.update(overrides)
    out = os.path.join(out_root, name); os.makedirs(out, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    model = hf_model(kind, c).float().eval()
    randomize(model, gen)
    model.save_pretrained(out, safe_serialization=True)
    json.dump(classic_config(kind, c), open(os.path.join(out, "config.json"), "w"), indent=2)
    for f in ("generation_config.json",):
        if os.path.exists(os.path.join(out, f)):
            os.remove(os.path.join(out, f))
    # The classic config must load back into the same function (our runtime reads that file).
    model = (DeepseekV3ForCausalLM if kind == "v3" else DeepseekV2ForCausalLM).from_pretrained(out, dtype=torch.float32).eval()
    ref = {}
    for i, L in enumerate(prompt_lens):
        ids = torch.randint(2, c["vocab_size"], (1, L), generator=gen)
        with torch.no_grad():
            logits = model(ids).logits[0].float()
            g = model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                               use_cache=True, output_logits=True, return_dict_in_generate=True,
                               eos_token_id=None, pad_token_id=0)
        ref[f"prompt.{i}.input_ids"] = ids[0].clone()
        ref[f"prompt.{i}.logits"] = logits.contiguous()
        ref[f"prompt.{i}.greedy"] = g.sequences[0, L:].clone().contiguous()
        ref[f"prompt.{i}.greedy_logits"] = torch.stack([x[0].float() for x in g.logits]).contiguous()
    import transformers
    meta = {"transformers": transformers.__version__, "torch": torch.__version__, "variant": name, "exercises": note}
    save_file(ref, os.path.join(out, "reference.safetensors"), metadata=meta)
    add_bf16_error(out, kind)
    print(name, "->", out, "|", note)

def add_bf16_error(out, kind):
    """Writes bf16_vs_fp32_max_abs into out/reference.safetensors' metadata (tensors unchanged)."""
    from safetensors import safe_open
    from safetensors.torch import load_file
    path = os.path.join(out, "reference.safetensors")
    with safe_open(path, "pt") as f:
        meta = dict(f.metadata() or {})
    ref = load_file(path)
    cls = DeepseekV3ForCausalLM if kind == "v3" else DeepseekV2ForCausalLM
    model = cls.from_pretrained(out, dtype=torch.bfloat16).eval()
    worst = 0.0
    for i in range(len([k for k in ref if k.endswith(".input_ids")])):
        ids, greedy = ref[f"prompt.{i}.input_ids"], ref[f"prompt.{i}.greedy"]
        L = ids.numel()
        with torch.no_grad():
            got = model(torch.cat([ids, greedy[:-1]])[None]).logits[0].float()
        worst = max(worst, (got[:L] - ref[f"prompt.{i}.logits"]).abs().max().item(),
                    (got[L - 1:] - ref[f"prompt.{i}.greedy_logits"]).abs().max().item())
    meta["bf16_vs_fp32_max_abs"] = "%.4g" % worst
    save_file(ref, path, metadata=meta)
    print(os.path.basename(out), "bf16_vs_fp32_max_abs", meta["bf16_vs_fp32_max_abs"])

if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--bf16-error"]
    root = args[0] if args else "tests/data/shapes"
    if "--bf16-error" in sys.argv[1:]:
        for name, (kind, _, _) in VARIANTS.items():
            add_bf16_error(os.path.join(root, name), kind)
        sys.exit(0)
    torch.manual_seed(0)
    for seed, (name, (kind, overrides, note)) in enumerate(VARIANTS.items(), start=100):
        build(root, name, kind, overrides, note, seed)
