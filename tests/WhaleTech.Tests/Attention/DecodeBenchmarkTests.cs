using TorchSharp;
using WhaleTech.Attention;
using static TorchSharp.torch;
using WhaleTech.Lab.Mla;

namespace WhaleTech.Tests.Attention;

/// <summary>Structure of the benchmark output on tiny shapes (no timing asserts).</summary>
public class DecodeBenchmarkTests
{
    static readonly AttentionShapes Tiny = new("tiny", 32, 4, 8, 2, 16, 16, 4, 8, 8);

    [Fact]
    public void RunReturnsOneRowPerPointWithAccountedKvBytes()
    {
        var grid = new DecodeGrid(Tiny, [1, 2], [8, 16], DecodeGrid.AllVariants, ScalarType.Float32, 0, 1, 1);
        var rows = DecodeBenchmark.Run(torch.CPU, grid);
        Assert.Equal(6 * 2 * 2, rows.Count);
        Assert.All(rows, r => { Assert.Null(r.Skipped); Assert.True(r.MedianMs > 0); Assert.True(r.KvGBps > 0); });
        long PerToken(string v) => rows.First(r => r.Variant == v && r.Batch == 1 && r.Context == 8).KvBytesRead / 8;
        Assert.Equal(2 * 4 * 8 * 4, PerToken("Mha"));                // 2·H·Dh fp32
        Assert.Equal(2 * 2 * 8 * 4, PerToken("Gqa8"));               // GQA with this shape's 2 KV heads
        Assert.Equal(2 * 8 * 4, PerToken("Mqa"));
        Assert.Equal(4 * (8 + 4 + 8) * 4, PerToken("MlaNaive"));     // H·(Dn+Dr+Dv)
        Assert.Equal((16 + 4) * 4, PerToken("MlaAbsorbed"));         // Dc+Dr
        Assert.Equal((16 + 4) * 4, PerToken("MlaAbsorbedSdpa"));     // same cache, fused attention kernel
        var skipped = DecodeBenchmark.Run(torch.CPU, grid with { MemoryBudgetGiB = 1e-9 });
        Assert.All(skipped, r => Assert.NotNull(r.Skipped));
    }

    [Fact]
    public void PrefillCopyAndCrossoverProduceRows()
    {
        Assert.True(DecodeBenchmark.CopyBandwidthGBps(torch.CPU, 1 << 20, 0, 1) > 0);
        Assert.Equal(6, DecodeBenchmark.Prefill(torch.CPU, Tiny, 1, 8, ScalarType.Float32, 0, 1).Count);
        var cross = DecodeBenchmark.Crossover(torch.CPU, Tiny, 8, [1, 4], ScalarType.Float32, 1, 0, 1);
        Assert.Equal([1L, 4L], cross.Select(c => c.NewTokens));
        Assert.All(cross, c => Assert.True(c.AbsorbedGflop > 0 && c.MaterializedGflop > 0));
    }

    [Fact]
    public void AnalyticCrossoverIsWhereTheFlopEstimatesMeet()
    {
        var v3 = AttentionShapes.V3;
        double t = DecodeBenchmark.AnalyticCrossover(v3, 1024);
        var (a, m) = DecodeBenchmark.MlaFlops(v3, (long)Math.Floor(t), 1024);
        Assert.True(a < m);                                          // below T*: absorbing is cheaper
        (a, m) = DecodeBenchmark.MlaFlops(v3, (long)Math.Ceiling(t), 1024);
        Assert.True(a > m);
        Assert.InRange(DecodeBenchmark.AnalyticCrossover(v3, 1L << 40), 170.6, 170.7); // Dc(Dn+Dv)/(2Dc−Dn−Dv) = 512·256/768
    }
}
