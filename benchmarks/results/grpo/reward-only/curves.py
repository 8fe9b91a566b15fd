#!/usr/bin/env python3
"""R1-Zero-style curves of a reward-only round (DeepSeek-R1 Figures 2-3: accuracy and response length over RL steps).

Usage: python3 curves.py <round folder> [<out name>]
Reads <round folder>/seed*/metrics.jsonl (held-out exact match at each eval step; per-step train-sample accuracy,
partial credit and mean completion length) and writes <out name>.svg (default curves.svg), a .png beside it where
rsvg-convert is installed (Debian: librsvg2-bin), and <out name>.json with the plotted numbers. Three panels, one
line per seed: held-out exact match, train-sample partial credit (50-step windows), mean completion length in
characters (50-step windows). Standard library only."""
import json, math, os, re, shutil, subprocess, sys

src = sys.argv[1]
name = sys.argv[2] if len(sys.argv) > 2 else "curves"
W = 50
seeds = {}
for d in sorted(os.listdir(src)):
    m = re.fullmatch(r"seed(\d+)", d)
    path = os.path.join(src, d, "metrics.jsonl")
    if not m or not os.path.exists(path):
        continue
    rows = [json.loads(line) for line in open(path)]
    steps = [r for r in rows if "reward" in r]
    window = lambda key: [(steps[i]["step"], sum(r[key] for r in steps[i:i + W]) / len(steps[i:i + W]))
                          for i in range(0, len(steps), W) if key in steps[i]]
    seeds[int(m.group(1))] = {
        "heldout": [(r["step"], r["eval/accuracy"]) for r in rows if "eval/accuracy" in r],
        "partial": window("rewards/partial/mean"),
        "length": window("completions/mean_length"),
    }
if not seeds:
    sys.exit(f"no seed*/metrics.jsonl under {src}")

panels = [("held-out exact match", "heldout", 1.0, "%"), ("train partial credit (50-step windows)", "partial", 1.0, ""),
          ("completion length, chars (50-step windows)", "length", None, "")]
PW, PH, L, T, B = 330, 230, 48, 28, 34
colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]
last = max(s for v in seeds.values() for key in ("heldout", "partial", "length") for s, _ in v[key]) or 1
unit_step = 500 if last > 1000 else 100
max_step = unit_step * math.ceil(last / unit_step)                      # the axis ends at a round step
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{PW * len(panels)}" height="{PH + 20}" font-family="sans-serif" font-size="11">',
       f'<rect width="100%" height="100%" fill="white"/>']
for p, (title, key, top, unit) in enumerate(panels):
    x0 = p * PW + L
    values = [v for s in seeds.values() for _, v in s[key]]
    hi = top if top is not None else max(values) * 1.15
    if key == "heldout":                                                # round up to the next 10 %
        hi = min(1.0, max(0.1, math.ceil(max(values) * 1.1 * 10) / 10))
    sx = lambda s: x0 + (PW - L - 12) * s / max_step
    sy = lambda v: T + (PH - T - B) * (1 - v / hi)
    svg.append(f'<text x="{x0}" y="16" font-weight="bold">{title}</text>')
    svg.append(f'<line x1="{x0}" y1="{sy(0)}" x2="{sx(max_step)}" y2="{sy(0)}" stroke="black"/>')
    svg.append(f'<line x1="{x0}" y1="{sy(0)}" x2="{x0}" y2="{sy(hi)}" stroke="black"/>')
    for k in range(5):
        v = hi * k / 4
        label = f"{100 * v:.0f} %" if unit == "%" else (f"{v:.2f}" if hi <= 1.5 else f"{v:.0f}")
        svg.append(f'<text x="{x0 - 4}" y="{sy(v) + 4}" text-anchor="end">{label}</text>')
    for k in range(5):
        s = max_step * k / 4
        svg.append(f'<text x="{sx(s)}" y="{PH - B + 14}" text-anchor="middle">{s:.0f}</text>')
    svg.append(f'<text x="{sx(max_step / 2)}" y="{PH - B + 28}" text-anchor="middle">GRPO step</text>')
    for i, (seed, v) in enumerate(sorted(seeds.items())):
        pts = " ".join(f"{sx(s):.1f},{sy(val):.1f}" for s, val in v[key])
        svg.append(f'<polyline points="{pts}" fill="none" stroke="{colors[i % len(colors)]}" stroke-width="1.5"/>')
        if p == 0:
            svg.append(f'<text x="{x0 + 8}" y="{T + 14 * (i + 1)}" fill="{colors[i % len(colors)]}">seed {seed}</text>')
svg.append("</svg>")
out = os.path.join(src, name + ".svg")
open(out, "w").write("\n".join(svg))
json.dump({str(k): v for k, v in sorted(seeds.items())}, open(os.path.join(src, name + ".json"), "w"), indent=1)
if shutil.which("rsvg-convert"):
    subprocess.run(["rsvg-convert", out, "-o", os.path.join(src, name + ".png")], check=True)
print(f"wrote {out} (+ .png with rsvg-convert) and {name}.json for seeds {sorted(seeds)}")
