#!/usr/bin/env python3
"""Step scaling of an MLA frontier: where does each variant's excess loss go as training gets longer?

    python3 step_scaling.py [--predict STEPS] [--fit-upto STEPS] [--svg FILE] RUN1/mla-frontier.json RUN2/mla-frontier.json ...

The files are frontier runs of the same task, models and seeds at different step counts (each run anneals its own
cosine schedule, so a point is "the excess loss of a full run of S steps", not a point on one long curve). For every
variant and every seed present at all of that variant's lengths:

  * the excess loss at each length (mean ± 95 % Student-t over the seeds) and the paired change per step doubling;
  * a fit of  L(S) = L_inf + A · S^(-alpha)  (L_inf >= 0: the excess over the Bayes loss cannot be negative), per
    seed and on the seed mean: alpha on a grid, L_inf and A by least squares for each alpha;
  * L_inf (mean ± t over the per-seed fits), the paired L_inf − L_inf(reference), and how far the longest run
    is above its own L_inf;
  * with --predict S: each fit's value at S (a forecast to check against a later run);
  * with --fit-upto S: fit only the lengths <= S (so a forecast made before a run can be checked after it);
  * with --svg FILE: a log-log plot of the seed means per variant (points, with the 95 % intervals as bars) and
    the fit to them (dashed), written to FILE.

The reference variant is the first one of the first file (the largest cache). Standard library only."""
import json, math, sys

T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
       10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093}
ALPHAS = [0.05 + 0.01 * i for i in range(396)]          # 0.05 … 4.00


def mean_ci(xs):
    n = len(xs)
    m = sum(xs) / n
    if n < 2: return m, float('nan')
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1))
    return m, T95[n - 1] * sd / math.sqrt(n)


def fit(points):
    """Least-squares L_inf + A·S^-alpha over (S, L) points, L_inf >= 0. Returns (L_inf, A, alpha, rms)."""
    best = None
    for a in ALPHAS:
        xs = [(s / 1000.0) ** -a for s, _ in points]
        ys = [l for _, l in points]
        n = len(xs); mx = sum(xs) / n; my = sum(ys) / n
        sxx = sum((x - mx) ** 2 for x in xs)
        amp = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx > 0 else 0.0
        inf = my - amp * mx
        if inf < 0:                                   # the bound: a pure power law through the origin
            inf = 0.0
            amp = sum(x * y for x, y in zip(xs, ys)) / sum(x * x for x in xs)
        sse = sum((inf + amp * x - y) ** 2 for x, y in zip(xs, ys))
        if best is None or sse < best[3]: best = (inf, amp, a, sse)
    inf, amp, a, sse = best
    return inf, amp, a, math.sqrt(sse / len(points))


def value(f, steps):
    inf, amp, a, _ = f
    return inf + amp * (steps / 1000.0) ** -a


def fmt(m_ci, p=4, sign=False):
    m, ci = m_ci
    s = "{:+.{p}f}".format(m, p=p) if sign else "{:.{p}f}".format(m, p=p)
    return s if math.isnan(ci) else s + " ± {:.{p}f}".format(ci, p=p)


def main():
    args = sys.argv[1:]
    predict = fit_upto = svg = None
    while args and args[0].startswith('--'):
        if len(args) < 2: sys.exit(__doc__)
        if args[0] == '--predict': predict = int(args[1])
        elif args[0] == '--fit-upto': fit_upto = int(args[1])
        elif args[0] == '--svg': svg = args[1]
        else: sys.exit(__doc__)
        args = args[2:]
    if len(args) < 2: sys.exit(__doc__)
    loss = {}                                             # (variant, seed) -> {steps: excess loss}
    order = []
    for path in args:
        runs = json.load(open(path))['result']['Runs']
        for r in runs:
            steps = r['Curve'][-1]['Step']
            loss.setdefault((r['Variant'], r['Seed']), {})[steps] = r['EvalLoss']
            if r['Variant'] not in order: order.append(r['Variant'])
    ref = order[0]
    lengths_all = sorted({s for d in loss.values() for s in d})
    print(f"Fits of L(S) = L_inf + A·(S/1000)^-alpha to the excess loss (nats/token) of full runs of S steps"
          + (f", fitted on S ≤ {fit_upto:,}" if fit_upto else "") + ". Mean ± 95 % Student-t over seeds.\n")

    rows = {}
    for v in order:
        lengths = sorted({s for (vv, _), d in loss.items() if vv == v for s in d})
        seeds = sorted(sd for (vv, sd), d in loss.items() if vv == v and all(s in d for s in lengths))
        fit_lengths = [s for s in lengths if fit_upto is None or s <= fit_upto]
        if len(seeds) < 2 or len(fit_lengths) < 3: continue
        per_seed = {sd: fit([(s, loss[(v, sd)][s]) for s in fit_lengths]) for sd in seeds}
        mean_pts = [(s, sum(loss[(v, sd)][s] for sd in seeds) / len(seeds)) for s in fit_lengths]
        rows[v] = dict(lengths=lengths, seeds=seeds, per_seed=per_seed, on_mean=fit(mean_pts))

    print("| variant | seeds | " + " | ".join(f"at {s:,}" for s in lengths_all) + " |")
    print("|---|---:|" + "---|" * len(lengths_all))
    for v, r in rows.items():
        cells = [fmt(mean_ci([loss[(v, sd)][s] for sd in r['seeds']])) if s in r['lengths'] else "—" for s in lengths_all]
        print(f"| {v} | {len(r['seeds'])} | " + " | ".join(cells) + " |")

    print("\nPaired change per step doubling (same seed, same data stream and eval set):\n")
    pairs = [(a, b) for a, b in zip(lengths_all, lengths_all[1:]) if b == 2 * a]
    print("| variant | " + " | ".join(f"{b:,} − {a:,}" for a, b in pairs) + " | ratio of successive changes (seed means) |")
    print("|---|" + "---|" * len(pairs) + "---|")
    for v, r in rows.items():
        ch = []
        for a, b in pairs:
            ch.append(mean_ci([loss[(v, sd)][b] - loss[(v, sd)][a] for sd in r['seeds']]) if a in r['lengths'] and b in r['lengths'] else None)
        ratios = [f"{c2[0] / c1[0]:.2f}" for c1, c2 in zip(ch, ch[1:]) if c1 and c2 and c1[0] != 0]
        print(f"| {v} | " + " | ".join(fmt(c, sign=True) if c else "—" for c in ch) + f" | {', '.join(ratios) or '—'} |")

    head = "| variant | alpha (seed mean) | fit rms | L_inf | L_inf − L_inf(" + ref + ") | longest run − its L_inf |"
    if predict: head += f" forecast at {predict:,} |"
    print("\nThe fits (L_inf and the forecast per seed, then mean ± t; alpha and rms of the fit to the seed means):\n")
    print(head)
    print("|---|---:|---:|---|---|---|" + ("---|" if predict else ""))
    for v, r in rows.items():
        inf = [r['per_seed'][sd][0] for sd in r['seeds']]
        longest = max(s for s in r['lengths'] if fit_upto is None or s <= fit_upto)
        above = [loss[(v, sd)][longest] - r['per_seed'][sd][0] for sd in r['seeds']]
        if v != ref and ref in rows:
            shared = [sd for sd in r['seeds'] if sd in rows[ref]['per_seed']]
            gap = fmt(mean_ci([r['per_seed'][sd][0] - rows[ref]['per_seed'][sd][0] for sd in shared]), sign=True)
        else: gap = "—"
        m = r['on_mean']
        line = f"| {v} | {m[2]:.2f} | {m[3]:.5f} | {fmt(mean_ci(inf))} | {gap} | {fmt(mean_ci(above), sign=True)} at {longest:,} |"
        if predict: line += f" {fmt(mean_ci([value(r['per_seed'][sd], predict) for sd in r['seeds']]))} |"
        print(line)
    if svg: write_svg(svg, rows, loss, fit_upto)


COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f']


def write_svg(path, rows, loss, fit_upto):
    """Log-log plot: x = steps of the full run, y = excess loss; seed means ± 95 % t, and the fit to the means."""
    W, H, L, R, T, B = 760, 480, 70, 150, 40, 50
    pts = {v: [(s, mean_ci([loss[(v, sd)][s] for sd in r['seeds']])) for s in r['lengths']] for v, r in rows.items()}
    xs = [s for p in pts.values() for s, _ in p]
    ys = [max(m - ci, 1e-4) for p in pts.values() for _, (m, ci) in p] + [m + ci for p in pts.values() for _, (m, ci) in p]
    x0, x1 = math.log10(min(xs) / 1.3), math.log10(max(xs) * 1.3)
    y0, y1 = math.log10(min(ys) / 1.2), math.log10(max(ys) * 1.2)
    X = lambda s: L + (math.log10(s) - x0) / (x1 - x0) * (W - L - R)
    Y = lambda v: T + (y1 - math.log10(max(v, 10 ** y0))) / (y1 - y0) * (H - T - B)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2 - R / 2}" y="22" text-anchor="middle" font-size="14">Excess loss of full runs vs their length'
           + (f' (fit on ≤ {fit_upto:,} steps)' if fit_upto else '') + '</text>',
           f'<rect x="{L}" y="{T}" width="{W - L - R}" height="{H - T - B}" fill="none" stroke="black"/>']
    for s in sorted(set(xs)):
        out.append(f'<line x1="{X(s):.1f}" y1="{H - B}" x2="{X(s):.1f}" y2="{H - B + 5}" stroke="black"/>'
                   f'<text x="{X(s):.1f}" y="{H - B + 18}" text-anchor="middle">{s // 1000}k</text>')
    for e in range(math.floor(y0), math.ceil(y1) + 1):
        for m in (1, 2, 5):
            v = m * 10 ** e
            if y0 <= math.log10(v) <= y1:
                out.append(f'<line x1="{L}" y1="{Y(v):.1f}" x2="{W - R}" y2="{Y(v):.1f}" stroke="#ddd"/>'
                           f'<text x="{L - 6}" y="{Y(v) + 4:.1f}" text-anchor="end">{v:g}</text>')
    out.append(f'<text x="{(L + W - R) / 2}" y="{H - 12}" text-anchor="middle">steps of the run (log)</text>')
    out.append(f'<text x="16" y="{(T + H - B) / 2}" text-anchor="middle" transform="rotate(-90 16 {(T + H - B) / 2})">'
               'excess loss, nats/token (log)</text>')
    for i, (v, p) in enumerate(pts.items()):
        c = COLORS[i % len(COLORS)]
        f = rows[v]['on_mean']
        lo, hi = math.log10(min(xs)), math.log10(max(xs) * 1.25)
        curve = [10 ** (lo + (hi - lo) * j / 40) for j in range(41)]
        out.append('<polyline fill="none" stroke-dasharray="4 3" stroke="' + c + '" points="' +
                   ' '.join(f'{X(s):.1f},{Y(value(f, s)):.1f}' for s in curve) + '"/>')
        out.append('<polyline fill="none" stroke="' + c + '" points="' + ' '.join(f'{X(s):.1f},{Y(m):.1f}' for s, (m, _) in p) + '"/>')
        for s, (m, ci) in p:
            out.append(f'<line x1="{X(s):.1f}" y1="{Y(m - ci):.1f}" x2="{X(s):.1f}" y2="{Y(m + ci):.1f}" stroke="{c}"/>'
                       f'<circle cx="{X(s):.1f}" cy="{Y(m):.1f}" r="3.5" fill="{c}"/>')
        out.append(f'<line x1="{W - R + 12}" y1="{T + 12 + 20 * i}" x2="{W - R + 32}" y2="{T + 12 + 20 * i}" stroke="{c}" stroke-width="3"/>'
                   f'<text x="{W - R + 38}" y="{T + 16 + 20 * i}">{v}</text>')
    out.append(f'<text x="{W - R + 12}" y="{T + 32 + 20 * len(pts)}" font-size="11">dashed: fit</text></svg>')
    tmp = path + '.tmp'
    with open(tmp, 'w') as fh: fh.write('\n'.join(out) + '\n')
    import os
    os.replace(tmp, path)


main()
