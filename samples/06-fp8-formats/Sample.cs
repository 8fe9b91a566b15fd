// Sample 06 — FP8 formats: E4M3 vs E5M2, their edge cases, and why the scale granularity matters.
// E4M3 (bias 7, max 448, no infinity) has more precision; E5M2 (bias 15, max 57344, with ±inf) more range
// (Micikevicius et al. 2022, "FP8 Formats for Deep Learning", Table 1). DeepSeek-V3 (§3.3.1–3.3.2) uses E4M3
// for everything and wins the range back with fine-grained scales: one per 1×128 activation tile and one
// per 128×128 weight block. SQNR = 10·log10(Σx² / Σ(x − x̂)²) over the bulk (outlier rows/columns excluded).
//
// Shapes: x [R, C] (R tokens, C channels); the lab uses 8 outlier channels or tokens.
using WhaleTech.Fp8;
using static TorchSharp.torch;
using WhaleTech.Lab.Fp8;

namespace WhaleTech.Samples;

public static class S06Fp8Formats
{
    public const string Title = "FP8 formats: E4M3 vs E5M2, edge cases, SQNR by scale granularity";

    public static void Run(SampleContext ctx)
    {
        using var scope = NewDisposeScope();
        // 1. The two formats.
        ctx.Out.WriteLine($"  {"format",-6} {"max",8} {"min normal",12} {"min subnormal",14} {"mantissa bits",14}");
        foreach (var f in new[] { Fp8Format.E4M3, Fp8Format.E5M2 })
            ctx.Out.WriteLine($"  {f.Name,-6} {f.MaxValue,8:G6} {f.MinNormal,12:G4} {f.MinSubnormal,14:G4} {f.MantissaBits,14}");

        // 2. Edge cases of the cast (Fp8Cast.Round, bit-exact against libtorch's own float8 cast).
        float[] inputs = [1.0f, 1.0625f, 1.1f, 464f, 465f, 61440f, float.PositiveInfinity, float.NaN, 1e-30f, 3e-3f];
        ctx.Out.WriteLine($"\n  {"x",10} {"E4M3",10} {"E4M3 sat",10} {"E5M2",10} {"E5M2 sat",10}");
        foreach (var x in inputs)
            ctx.Out.WriteLine($"  {x,10:G6} {F(Fp8Cast.Round(x, Fp8Format.E4M3)),10} {F(Fp8Cast.Round(x, Fp8Format.E4M3, Fp8Overflow.Saturating)),10} " +
                              $"{F(Fp8Cast.Round(x, Fp8Format.E5M2)),10} {F(Fp8Cast.Round(x, Fp8Format.E5M2, Fp8Overflow.Saturating)),10}");
        var probe = tensor(inputs.Where(float.IsFinite).ToArray());
        var ours = Fp8Cast.Round(probe, Fp8Format.E4M3);
        var libtorch = Fp8Cast.Reference(probe, Fp8Format.E4M3);
        bool agree = ours.isnan().logical_or(libtorch.isnan()).logical_not().logical_and(ours.ne(libtorch)).sum().item<long>() == 0;
        ctx.Out.WriteLine($"Fp8Cast.Round agrees with libtorch's Float8_e4m3fn cast on these inputs: {agree}");

        // 3. Precision: relative rounding error of N(0,1) values, no scaling needed (all in range).
        var g = randn(1 << 14, generator: new Generator(6));
        foreach (var f in new[] { Fp8Format.E4M3, Fp8Format.E5M2 })
            ctx.Out.WriteLine($"SQNR of N(0,1) cast to {f.Name}: {Fp8Lab.Sqnr(g, Fp8Cast.Round(g, f)),5:F1} dB");

        // 4. Gradients are small: a plain cast flushes them to zero, a per-tensor scale rescues them.
        foreach (var f in new[] { Fp8Format.E4M3, Fp8Format.E5M2 })
        {
            var (unscaled, scaled) = Fp8Lab.GradientUnderflow(f, std: 1e-4, n: 1 << 14);
            ctx.Out.WriteLine($"Gradients with std 1e-4 in {f.Name}: flushed to zero {unscaled,6:P1} without a scale, {scaled,6:P1} with a per-tensor scale");
        }

        // 5. SQNR by granularity with 8 outlier channels ×1e4 / ×1e5 (E4M3).
        int rows = ctx.Quick ? 256 : 1024, cols = ctx.Quick ? 512 : 2048;
        var table = Fp8Lab.SqnrTable(rows, cols, outlierCount: 8, factors: [1e4, 1e5], seed: 0);
        ctx.Out.WriteLine($"\nBulk SQNR (dB) of a {rows}×{cols} N(0,1) tensor, E4M3, by scale granularity:");
        var grans = table.Select(r => r.Granularity).Distinct().ToArray();
        ctx.Out.WriteLine($"  {"outliers",-16}" + string.Concat(grans.Select(n => $"{n,10}")));
        foreach (var grp in table.GroupBy(r => (r.Outliers, r.Factor)))
            ctx.Out.WriteLine($"  {(grp.Key.Outliers == "none" ? "none" : $"{grp.Key.Outliers} ×{grp.Key.Factor:G0}"),-16}" + string.Concat(grp.Select(r => $"{r.SqnrDb,10:F1}")));
        var ch5 = table.Where(r => r.Outliers == "channels" && r.Factor == 1e5).ToDictionary(r => r.Granularity, r => r.SqnrDb);
        ctx.Out.WriteLine($"1×128 tiles beat one per-tensor scale with outlier channels ×1e5: {ch5["1x128"] > ch5["tensor"]}");

        var plt = new ScottPlot.Plot();
        int i = 0;
        foreach (var grp in table.Where(r => r.Outliers != "tokens").GroupBy(r => r.Granularity))
        {
            var ys = grp.Select(r => r.SqnrDb).ToArray();
            var line = plt.Add.Scatter(Enumerable.Range(0, ys.Length).Select(k => (double)k).ToArray(), ys);
            line.LegendText = grp.Key;
            i++;
        }
        plt.Axes.Bottom.SetTicks([0, 1, 2], ["no outliers", "channels ×1e4", "channels ×1e5"]);
        plt.Axes.Left.Label.Text = "bulk SQNR (dB)";
        plt.Title($"E4M3 SQNR by scale granularity ({rows}×{cols})");
        plt.Axes.Margins(horizontal: 0.08);                          // the end points and tick labels stay inside
        plt.ShowLegend(ScottPlot.Edge.Right);                        // outside the data: covers no point
        var path = Path.Combine(ctx.OutDir, "sqnr_by_granularity.png");
        plt.SavePng(path, 640, 400);
        ctx.Out.WriteLine($"Plot: {path}. The full 8192×4096 lab: whale fp8 lab (results in benchmarks/results/fp8/).");
    }

    static string F(float v) => float.IsNaN(v) ? "NaN" : float.IsInfinity(v) ? (v > 0 ? "+inf" : "-inf") : v.ToString("G6");
}
