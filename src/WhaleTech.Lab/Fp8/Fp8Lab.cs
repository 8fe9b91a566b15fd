// The FP8 lab: why DeepSeek-V3 (§3.3.2) quantizes activations per 1×128 tile and weights per 128×128
// block. A Gaussian tensor gets a few outlier channels (columns) or tokens (rows) multiplied by 1e3…1e5;
// one scale per tensor is then set by the outliers and the bulk of the values is crushed towards zero,
// while a fine-grained scale confines the damage to the groups that hold an outlier.
//
//   SQNR = 10·log10( Σ x² / Σ (x − x̂)² )  over the bulk (outlier rows/columns excluded), in dB
//   flushed-to-zero share = #{x ≠ 0, x̂ = 0} / #{x ≠ 0}  over the bulk
//
// Shapes: x [R, C] (R tokens, C channels); outlier channels are columns, outlier tokens are rows.
using TorchSharp;
using WhaleTech.Runtime;
using static TorchSharp.torch;

using WhaleTech.Fp8;

namespace WhaleTech.Lab.Fp8;

/// <summary>Where the outliers of a lab tensor sit.</summary>
public enum OutlierKind { None, Channels, Tokens }

/// <summary>How the outlier channels / tokens are spread: Contiguous = `count` adjacent ones starting at a
/// seeded random multiple of `count` (so 8 of them share one 128-wide tile, as in the H100 reference table of docs/fp8.md
/// table); Random = a seeded random subset (spread over up to `count` different tiles, much worse for 1×128
/// and 128×128 scales).</summary>
public enum OutlierPlacement { Contiguous, Random }

/// <summary>One cell of the lab table.</summary>
public sealed record LabRow(string Outliers, double Factor, string Granularity, double SqnrDb, double FlushedShare);

public static class Fp8Lab
{
    /// <summary>SQNR in dB of <paramref name="approx"/> against <paramref name="exact"/>, over the elements
    /// where <paramref name="mask"/> is true (all when null).</summary>
    public static double Sqnr(Tensor exact, Tensor approx, Tensor? mask = null)
    {
        using var scope = NewDisposeScope();
        var x = exact.to_type(ScalarType.Float64);
        var e = (approx.to_type(ScalarType.Float64) - x).square();
        var s = x.square();
        if (mask is not null) { e = e * mask; s = s * mask; }
        double noise = e.sum().item<double>(), signal = s.sum().item<double>();
        return noise == 0 ? double.PositiveInfinity : 10 * Math.Log10(signal / noise);
    }

    /// <summary>Share of nonzero elements (within the mask) that quantize to zero.</summary>
    public static double FlushedShare(Tensor exact, Tensor approx, Tensor? mask = null)
    {
        using var scope = NewDisposeScope();
        var nonzero = exact.ne(0);
        if (mask is not null) nonzero = nonzero.logical_and(mask);
        var flushed = nonzero.logical_and(approx.eq(0));
        long n = nonzero.sum().item<long>();
        return n == 0 ? 0 : flushed.sum().item<long>() / (double)n;
    }

    /// <summary>A Gaussian N(0, 1) tensor [R, C] with <paramref name="count"/> outlier rows or columns
    /// multiplied by <paramref name="factor"/>, chosen at random; returns the tensor and the bulk mask.</summary>
    public static (Tensor X, Tensor BulkMask) MakeOutlierTensor(long rows, long cols, OutlierKind kind, int count, double factor, long seed,
        OutlierPlacement placement = OutlierPlacement.Contiguous)
    {
        Guard.Positive("rows", rows);
        Guard.Positive("cols", cols);
        using var scope = NewDisposeScope();
        var gen = new torch.Generator((ulong)seed);
        var x = torch.randn(rows, cols, generator: gen);                          // [R, C]
        var mask = torch.ones(rows, cols, dtype: ScalarType.Bool);
        if (kind != OutlierKind.None)
        {
            long n = kind == OutlierKind.Channels ? cols : rows;
            Guard.InRange("count", count, 1, n);
            var idx = placement == OutlierPlacement.Random
                ? torch.randperm(n, generator: gen)[..count]                          // which channels / tokens
                : torch.arange(count) + torch.randint(0, n / count, [1], generator: gen) * count;
            int dim = kind == OutlierKind.Channels ? 1 : 0;
            var scale = torch.ones(n);
            scale.index_fill_(0, idx, factor);
            x = dim == 1 ? x * scale.unsqueeze(0) : x * scale.unsqueeze(1);
            mask.index_fill_(dim, idx, false);
        }
        return (x.MoveToOuterDisposeScope(), mask.MoveToOuterDisposeScope());
    }

    /// <summary>The lab table: for no outliers and for outlier channels / tokens at each factor, the bulk
    /// SQNR and flushed share under per-tensor, per-row, 1×t tile and t×t block scales (E4M3).</summary>
    public static List<LabRow> SqnrTable(long rows, long cols, int outlierCount = 8, double[]? factors = null, long seed = 0, Fp8Format? format = null, int tileSize = 128,
        OutlierPlacement placement = OutlierPlacement.Contiguous)
    {
        Guard.Positive("rows", rows);
        Guard.Positive("cols", cols);
        Guard.InRange("outlierCount", outlierCount, 0, Math.Min(rows, cols));
        MemoryEstimate.ForTensors("tensor and its FP8 copies", (double)rows * cols, 4, temporaries: 12).EnsureFits("rows/cols");
        factors ??= [1e3, 1e4, 1e5];
        format ??= Fp8Format.E4M3;
        var scaling = new Fp8Scaling(TileSize: tileSize);
        var cases = new List<(OutlierKind, double)> { (OutlierKind.None, 1) };
        foreach (var kind in new[] { OutlierKind.Channels, OutlierKind.Tokens })
            foreach (var f in factors) cases.Add((kind, f));
        var table = new List<LabRow>();
        foreach (var (kind, factor) in cases)
        {
            using var scope = NewDisposeScope();
            var (x, mask) = MakeOutlierTensor(rows, cols, kind, outlierCount, factor, seed, placement);
            foreach (var g in new[] { Fp8Granularity.PerTensor, Fp8Granularity.PerRow, Fp8Granularity.Tile, Fp8Granularity.Block })
            {
                using var inner = NewDisposeScope();
                var xhat = Fp8Quantizer.FakeQuantize(x, format, g, scaling);
                table.Add(new LabRow(kind.ToString().ToLowerInvariant(), factor, Fp8Granularities.Name(g, tileSize), Sqnr(x, xhat, mask), FlushedShare(x, xhat, mask)));
            }
        }
        return table;
    }

    /// <summary>Gradient underflow: share of a gradient tensor with typical magnitude <paramref name="std"/>
    /// flushed to zero when cast to <paramref name="format"/> without scaling, and with a per-tensor scale.</summary>
    public static (double Unscaled, double Scaled) GradientUnderflow(Fp8Format format, double std, long n = 1 << 16, long seed = 0)
    {
        using var scope = NewDisposeScope();
        var g = torch.randn(n, generator: new torch.Generator((ulong)seed)) * std;
        var unscaled = Fp8Cast.Round(g, format, Fp8Overflow.Saturating);
        var scaled = Fp8Quantizer.FakeQuantize(g, format, Fp8Granularity.PerTensor);
        return (FlushedShare(g, unscaled), FlushedShare(g, scaled));
    }
}
