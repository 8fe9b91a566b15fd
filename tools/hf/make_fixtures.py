#!/usr/bin/env python3
"""Tiny random DeepSeek checkpoints made by Hugging Face transformers, for WhaleTech's parity tests.

    python3 tools/hf/make_fixtures.py OUTDIR

writes OUTDIR/{v3, v2-lite-v3class, v2-lite}/ with config.json + model.safetensors (save_pretrained) and
reference.safetensors:
    input_ids  [2, 12] int64    random prompts
    logits     [2, 12, V] fp32  full forward, eager attention, no cache
    generated  [2, 20] int64    generate(do_sample=False, max_new_tokens=8, use_cache=True), no eos
plus OUTDIR/fixtures.json (versions, margins, sizes). Needs python3 with torch, transformers, safetensors.

The configs are the same as WhaleTech's HubParity.TinyConfigs (src/WhaleTech/IO/HubParity.cs):
  v3               DeepseekV3ForCausalLM: q_lora, dense first layer, sigmoid noaux_tc over 4 groups (top-2 groups)
                   with a NON-ZERO e_score_correction_bias, YaRN x4 from 16 positions (prompt + generation = 20)
  v2-lite-v3class  DeepseekV3ForCausalLM without q_lora (V2-Lite shapes, mscale = mscale_all_dim = 0.707)
  v2-lite          DeepseekV2ForCausalLM: deepseek_v2 format (no router bias), softmax group_limited_greedy,
                   YaRN with mscale_all_dim 0 (where transformers' DeepseekV2 and DeepSeek's code agree)
The router bias is drawn from U(0, 0.3): transformers masks the experts of unchosen groups with 0.0 where
DeepSeek (and WhaleTech) use -inf; with non-negative biased scores both pick the same experts
(docs/hf-interop.md). Each model is re-seeded until greedy decoding has a clear top-1 margin at every step,
so 1e-6-level float differences cannot flip a token.
"""
import json
import math
import os
import sys

import torch
import transformers
from safetensors.torch import save_file

B, T, NEW = 2, 12, 8
MIN_MARGIN = 1e-3   # (top1 - top2) / max|logit| at every greedy step

COMMON = dict(
    vocab_size=96, hidden_size=32, intermediate_size=64, moe_intermediate_size=16, num_hidden_layers=3,
    first_k_dense_replace=1, num_attention_heads=4, num_key_value_heads=4, kv_lora_rank=16,
    qk_nope_head_dim=8, qk_rope_head_dim=8, v_head_dim=8, max_position_embeddings=64, rms_norm_eps=1e-6,
    rope_theta=10000.0, initializer_range=0.1, tie_word_embeddings=False, attention_bias=False,
    bos_token_id=None, eos_token_id=None, pad_token_id=None, n_routed_experts=8, num_experts_per_tok=2,
)

def yarn(mscale, mscale_all_dim=None):
    d = {"type": "yarn", "rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16,
         "beta_fast": 32.0, "beta_slow": 1.0, "mscale": mscale}
    if mscale_all_dim is not None:
        d["mscale_all_dim"] = mscale_all_dim
    return d

FIXTURES = {
    "v3": ("DeepseekV3", dict(COMMON, q_lora_rank=24, n_shared_experts=1, n_group=4, topk_group=2,
                              topk_method="noaux_tc", scoring_func="sigmoid", norm_topk_prob=True,
                              routed_scaling_factor=2.5, rope_scaling=yarn(1.0, 1.0))),
    "v2-lite-v3class": ("DeepseekV3", dict(COMMON, q_lora_rank=None, n_shared_experts=2, n_group=1, topk_group=1,
                                           topk_method="noaux_tc", scoring_func="sigmoid", norm_topk_prob=False,
                                           routed_scaling_factor=1.0, rope_scaling=yarn(0.707, 0.707))),
    "v2-lite": ("DeepseekV2", dict(COMMON, q_lora_rank=None, n_shared_experts=2, n_group=4, topk_group=2,
                                   topk_method="group_limited_greedy", scoring_func="softmax", norm_topk_prob=False,
                                   routed_scaling_factor=1.0, rope_scaling=yarn(1.0))),
}


def build(kind, kwargs, seed):
    config_cls = getattr(transformers, kind + "Config")
    model_cls = getattr(transformers, kind + "ForCausalLM")
    kw = dict(kwargs)
    rope = kw.pop("rope_scaling")
    try:   # transformers 5 spells it rope_parameters (with rope_theta inside); 4.x rope_scaling
        config = config_cls(**kw, rope_scaling=rope)
    except TypeError:
        config = config_cls(**{k: v for k, v in kw.items() if k != "rope_theta"},
                            rope_parameters=dict(rope, rope_theta=kw["rope_theta"]))
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = model_cls(config).eval().float()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or name.endswith("layernorm.weight"):
                p.uniform_(0.5, 1.5)
        for name, b in model.named_buffers():
            if name.endswith("e_score_correction_bias"):
                b.uniform_(0.0, 0.3)
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = None
    model.generation_config.bos_token_id = None
    return model


def reference(model, seed):
    g = torch.Generator().manual_seed(seed + 1)
    ids = torch.randint(0, model.config.vocab_size, (B, T), generator=g, dtype=torch.int64)
    with torch.no_grad():
        logits = model(input_ids=ids, use_cache=False).logits.float()
        out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=NEW,
                             min_new_tokens=NEW, use_cache=True, output_scores=True, return_dict_in_generate=True)
    margins = []
    for step in out.scores:                       # [B, V] per generated token
        top = step.float().topk(2, dim=-1).values
        margins.append(((top[:, 0] - top[:, 1]) / step.float().abs().max()).min().item())
    return ids, logits, out.sequences, min(margins)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    torch.set_num_threads(4)
    summary = {"transformers": transformers.__version__, "torch": torch.__version__, "fixtures": {}}
    for name, (kind, kwargs) in FIXTURES.items():
        if not hasattr(transformers, kind + "ForCausalLM"):
            print(f"{name}: transformers {transformers.__version__} has no {kind}ForCausalLM; skipped")
            continue
        try:
            for seed in range(50):
                model = build(kind, kwargs, seed)
                ids, logits, generated, margin = reference(model, seed)
                if margin >= MIN_MARGIN:
                    break
            else:
                raise RuntimeError(f"no seed < 50 gives a greedy margin >= {MIN_MARGIN}")
        except Exception as e:   # one class failing (e.g. an older DeepseekV2) must not lose the others
            print(f"{name}: FAILED {type(e).__name__}: {e}")
            summary["fixtures"][name] = {"error": f"{type(e).__name__}: {e}", "bytes": 0}
            continue
        folder = os.path.join(out_dir, name)
        model.save_pretrained(folder, safe_serialization=True)
        meta = {"producer": "transformers " + transformers.__version__, "torch": torch.__version__,
                "class": type(model).__name__, "seed": str(seed), "min_greedy_margin": f"{margin:.3e}"}
        save_file({"input_ids": ids.contiguous(), "logits": logits.contiguous(), "generated": generated.contiguous()},
                  os.path.join(folder, "reference.safetensors"), metadata=meta)
        # transformers must read back what it wrote (and give the same logits)
        again = getattr(transformers, kind + "ForCausalLM").from_pretrained(folder, torch_dtype=torch.float32, attn_implementation="eager").eval()
        with torch.no_grad():
            err = (again(input_ids=ids, use_cache=False).logits - logits).abs().max().item()
        keys = sorted(json.load(open(os.path.join(folder, "config.json"))).keys())
        size = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
        summary["fixtures"][name] = dict(meta, reload_max_abs_err=err, bytes=size, config_keys=keys,
                                         params=sum(p.numel() for p in model.parameters()))
        print(f"{name}: {type(model).__name__} seed {seed}, margin {margin:.2e}, reload err {err:.1e}, {size / 1024:.0f} KiB")
    total = sum(f["bytes"] for f in summary["fixtures"].values())
    summary["total_bytes"] = total
    with open(os.path.join(out_dir, "fixtures.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(f"total {total / 1024:.0f} KiB")
    if total > 2 * 1024 * 1024:
        sys.exit("fixtures exceed 2 MB")


if __name__ == "__main__":
    main()
