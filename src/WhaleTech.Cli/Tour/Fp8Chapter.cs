// Tour chapter: FP8 (E4M3) quantization error by scaling granularity (DeepSeek-V3 §3.3.1–3.3.2):
// one outlier channel ruins a per-tensor scale, 1×128 tiles and 128×128 blocks contain the damage.
using WhaleTech.Fp8;
using WhaleTech.Lab.Fp8;

namespace WhaleTech.Cli.Tour;

public sealed class Fp8Chapter : ITourChapter
{
    public string Title => "5. FP8: quantization error by scaling granularity";

    public TourSection Run(TourContext ctx, Action<double> progress)
    {
        long rows = ctx.Quick ? 256 : 1024, cols = ctx.Quick ? 256 : 1024;
        var table = Fp8Lab.SqnrTable(rows, cols, outlierCount: 8, factors: [1e5], seed: ctx.Seed);
        progress(1);
        var channels = table.Where(r => r.Outliers == "channels").ToList();
        var plot = "fp8_sqnr.png";
        PngPlot.Bars(Path.Combine(ctx.OutDir, plot), $"E4M3 bulk SQNR, {rows}×{cols} Gaussian + 8 outlier channels ×1e5", "SQNR (dB)",
            channels.Select(r => (r.Granularity, r.SqnrDb)).ToList());
        var md = $"E4M3 fake-quantization of a {rows}×{cols} Gaussian tensor (bulk SQNR excludes the outliers; flushed = share of bulk values rounded to 0):\n\n" +
                 "| outliers | granularity | SQNR (dB) | flushed |\n|---|---|---:|---:|\n" +
                 string.Join("\n", table.Select(r => $"| {r.Outliers}{(r.Outliers == "none" ? "" : $" ×{r.Factor:0e0}")} | {r.Granularity} | {r.SqnrDb:F1} | {100 * r.FlushedShare:F1}% |")) +
                 "\n\nWith one scale for the whole tensor the outliers push the bulk into E4M3's subnormals or to zero; DeepSeek-V3's 1×128 activation tiles and 128×128 weight blocks keep it. Full-size table: `whale fp8 lab` (benchmarks/results/fp8/).";
        var perTensor = channels.First(r => r.Granularity == Fp8Granularities.Name(Fp8Granularity.PerTensor));
        var tile = channels.First(r => r.Granularity == Fp8Granularities.Name(Fp8Granularity.Tile));
        return new TourSection(Title, md, "FP8 SQNR with outlier channels, per-tensor vs 1×128", $"{perTensor.SqnrDb:F1} vs {tile.SqnrDb:F1} dB", [plot]);
    }
}
