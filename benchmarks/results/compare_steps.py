#!/usr/bin/env python3
"""Step-doubling check of an MLA frontier: the same variants and seeds trained for N and for 2N steps.

    python3 compare_steps.py SHORT/mla-frontier.json LONG/mla-frontier.json

For every variant, over the seeds both runs share: the mean final excess loss (eval loss minus the Bayes loss,
i.e. the eval loss itself on MQAR) of each run, the paired change long − short (same seed: same data stream
and eval set), and the long run's own change over its last quarter; the paired difference against the
reference variant (the first one, the largest cache) at both lengths; plus the final recall (accuracy).
Intervals: 95 % Student-t over seeds. Standard library only."""
import json, math, sys

# Two-sided 95 % Student-t quantiles by degrees of freedom (seeds − 1).
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
       10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093}

def load(path):
    d = json.load(open(path))
    return d['result']

def mean_ci(xs):
    n = len(xs)
    m = sum(xs) / n
    if n < 2: return m, float('nan')
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1))
    if n - 1 not in T95: sys.exit(f"compare_steps.py: {n} shared seeds; the t table covers 2 to {max(T95) + 1}")
    return m, T95[n - 1] * sd / math.sqrt(n)

def at_step(curve, step):
    best = min(curve, key=lambda p: abs(p['Step'] - step))
    return best

def main():
    args = sys.argv[1:]
    if len(args) != 2: sys.exit(__doc__)
    short, long_ = load(args[0]), load(args[1])
    s_runs = {(r['Variant'], r['Seed']): r for r in short['Runs']}
    l_runs = {(r['Variant'], r['Seed']): r for r in long_['Runs']}
    s_steps = short['Runs'][0]['Curve'][-1]['Step']; l_steps = long_['Runs'][0]['Curve'][-1]['Step']
    variants = list(dict.fromkeys(r['Variant'] for r in long_['Runs']))
    print(f"| variant | seeds | excess loss at {s_steps:,} | at {l_steps:,} | paired change {l_steps:,} − {s_steps:,} | last-quarter change of the {l_steps:,}-step run | Δ vs {variants[0]} at {s_steps:,} | at {l_steps:,} | recall at {s_steps:,} | at {l_steps:,} |")
    print("|---|---:|---|---|---|---|---|---|---|---|")
    for v in variants:
        seeds = sorted(s for (vv, s) in l_runs if vv == v and (v, s) in s_runs)
        if not seeds: continue
        es = [s_runs[(v, s)]['EvalLoss'] for s in seeds]
        el = [l_runs[(v, s)]['EvalLoss'] for s in seeds]
        d = [b - a for a, b in zip(es, el)]
        tail = [l_runs[(v, s)]['Curve'][-1]['EvalLoss'] - at_step(l_runs[(v, s)]['Curve'], 0.75 * l_steps)['EvalLoss'] for s in seeds]
        acc_s = [s_runs[(v, s)]['EvalAccuracy'] for s in seeds]
        acc_l = [l_runs[(v, s)]['EvalAccuracy'] for s in seeds]
        f = lambda xs, p=4: "{:+.{p}f} ± {:.{p}f}".format(*mean_ci(xs), p=p)
        g = lambda xs, p=4: "{:.{p}f} ± {:.{p}f}".format(*mean_ci(xs), p=p)
        ref = variants[0]
        ds = [s_runs[(v, s)]['EvalLoss'] - s_runs[(ref, s)]['EvalLoss'] for s in seeds]
        dl = [l_runs[(v, s)]['EvalLoss'] - l_runs[(ref, s)]['EvalLoss'] for s in seeds]
        pct = lambda xs: " / ".join(f"{100 * x:.1f}" for x in xs) + " %"
        print(f"| {v} | {len(seeds)} | {g(es)} | {g(el)} | {f(d)} | {f(tail)} | {'—' if v == ref else f(ds)} | {'—' if v == ref else f(dl)} | {pct(acc_s)} | {pct(acc_l)} |")

main()
