#!/usr/bin/env python3
"""WhaleTech -> transformers: load WhaleTech-saved checkpoints with transformers and compare with WhaleTech's logits.

    python3 tools/hf/check_reverse.py WHALETECH_SAVED_DIR [RESULT_BASENAME]

WHALETECH_SAVED_DIR holds one subfolder per model, as `whale checkpoint export-parity DIR` writes them:
config.json + model.safetensors (WhaleTech's SavePretrained) + reference.safetensors (WhaleTech's input_ids,
logits [B, T, V] fp32 and greedy sequences). For each, transformers' AutoModelForCausalLM loads the folder
(fp32, eager attention; a missing or unexpected key fails the check), runs the same ids, and greedy-generates.
Error = max|a - b| / max|b| over all logits; pass = error <= 1e-4 and identical greedy tokens.
Writes RESULT_BASENAME.json and RESULT_BASENAME.md (default: WHALETECH_SAVED_DIR/reverse-parity).
"""
import json
import os
import sys

import torch
import transformers
from safetensors.torch import load_file

TOL = 1e-4


def check(folder):
    ref = load_file(os.path.join(folder, "reference.safetensors"))
    ids, want, want_gen = ref["input_ids"], ref["logits"].float(), ref["generated"]
    model, info = transformers.AutoModelForCausalLM.from_pretrained(
        folder, torch_dtype=torch.float32, attn_implementation="eager", output_loading_info=True)
    model.eval()
    problems = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = None
    with torch.no_grad():
        got = model(input_ids=ids, use_cache=False).logits.float()
        new = want_gen.shape[1] - ids.shape[1]
        gen = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=new,
                             min_new_tokens=new, use_cache=True)
    err = ((got - want).abs().max() / want.abs().max()).item()
    same = gen.shape == want_gen.shape and bool((gen == want_gen).all())
    return {
        "class": type(model).__name__,
        "model_type": model.config.model_type,
        "max_rel_err": err,
        "generations_equal": same,
        "load_problems": {k: list(map(str, v)) for k, v in problems.items()},
        "passed": err <= TOL and same and not problems,
        "whaletech_generated": want_gen.tolist(),
        "transformers_generated": gen.tolist(),
    }


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    root = sys.argv[1]
    base = sys.argv[2] if len(sys.argv) == 3 else os.path.join(root, "reverse-parity")
    results = {}
    for name in sorted(os.listdir(root)):
        folder = os.path.join(root, name)
        if os.path.isfile(os.path.join(folder, "reference.safetensors")):
            try:
                results[name] = check(folder)
            except Exception as e:  # a load failure is a result too
                results[name] = {"passed": False, "error": f"{type(e).__name__}: {e}"}
            print(name, "PASS" if results[name]["passed"] else "FAIL", results[name].get("max_rel_err", results[name].get("error")))
    summary = {"transformers": transformers.__version__, "torch": torch.__version__, "tolerance": TOL,
               "device": "cpu", "results": results, "all_passed": bool(results) and all(r["passed"] for r in results.values())}
    with open(base + ".json", "w") as f:
        json.dump(summary, f, indent=2)
    with open(base + ".md", "w") as f:
        f.write(f"# WhaleTech-saved checkpoints loaded by transformers {transformers.__version__} (torch {torch.__version__})\n\n")
        f.write("Produced by tools/hf/check_reverse.py on folders written by `whale checkpoint export-parity`.\n")
        f.write(f"Error = max|transformers - WhaleTech| / max|WhaleTech| over all logits (fp32); pass = error <= {TOL:g} and identical greedy tokens.\n\n")
        f.write("| model | class | max rel err | greedy tokens | load problems | result |\n|---|---|---|---|---|---|\n")
        for name, r in results.items():
            if "error" in r:
                f.write(f"| {name} | - | - | - | {r['error']} | FAIL |\n")
            else:
                f.write(f"| {name} | {r['class']} | {r['max_rel_err']:.2e} | {'identical' if r['generations_equal'] else 'DIFFER'} | "
                        f"{r['load_problems'] or 'none'} | {'PASS' if r['passed'] else 'FAIL'} |\n")
    print("wrote", base + ".json", base + ".md")
    sys.exit(0 if summary["all_passed"] else 1)


if __name__ == "__main__":
    main()
