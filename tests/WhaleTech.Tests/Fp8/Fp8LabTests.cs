using TorchSharp;
using WhaleTech.Fp8;
using WhaleTech.Runtime;
using static TorchSharp.torch;
using WhaleTech.Lab.Fp8;

namespace WhaleTech.Tests.Fp8;

public class Fp8LabTests
{
    public Fp8LabTests() => Backend.Initialize();

    [Fact]
    public void SqnrTableShowsWhyDeepSeekUsesFineGrainedScales()
    {
        // A smaller version of the 8192×4096 table (full run committed under benchmarks/results/fp8).
        var table = Fp8Lab.SqnrTable(512, 1024, outlierCount: 4, factors: [1e5], seed: 1);
        double Sqnr(string o, string g) => table.Single(r => r.Outliers == o && r.Granularity == g).SqnrDb;
        double Flushed(string o, string g) => table.Single(r => r.Outliers == o && r.Granularity == g).FlushedShare;
        // No outliers: E4M3's 3 mantissa bits give ≈ 31.5 dB whatever the granularity (issue: 31.5 / 31.8 / 31.5).
        Assert.InRange(Sqnr("none", "tensor"), 31.0, 32.0);
        Assert.InRange(Sqnr("none", "1x128"), 31.3, 32.3);
        Assert.InRange(Sqnr("none", "128x128"), 31.0, 32.0);
        // ×1e5 outliers: one scale per tensor crushes the bulk (issue: ≈ 5.5 dB, ≈ 64% flushed) …
        Assert.InRange(Sqnr("channels", "tensor"), 3.0, 9.0);
        Assert.InRange(Flushed("channels", "tensor"), 0.45, 0.75);
        // … 1×128 tiles confine outlier tokens to their own rows (issue: 31.8 dB) and outlier channels to their tiles.
        Assert.InRange(Sqnr("tokens", "1x128"), Sqnr("none", "1x128") - 0.1, Sqnr("none", "1x128") + 0.1);
        Assert.True(Sqnr("channels", "1x128") > Sqnr("channels", "tensor") + 8);
        Assert.True(Sqnr("tokens", "128x128") > Sqnr("tokens", "tensor") + 3);
    }

    [Fact]
    public void GradientsUnderflowWithoutScaling()
    {
        var (e4Unscaled, e4Scaled) = Fp8Lab.GradientUnderflow(Fp8Format.E4M3, 1e-4, n: 4096);
        Assert.Equal(1.0, e4Unscaled);              // every |g| ≲ 5e-4 < 2^-10: all flushed
        Assert.Equal(0.0, e4Scaled, 3);
        var (e5Unscaled, _) = Fp8Lab.GradientUnderflow(Fp8Format.E5M2, 1e-5, n: 4096);
        Assert.InRange(e5Unscaled, 0.4, 0.7);       // P(|g| < 2^-17) for std 1e-5 ≈ 0.55
    }

    [Fact]
    public void SqnrAndFlushedShareFollowTheirDefinitions()
    {
        using var scope = NewDisposeScope();
        var x = torch.tensor(new float[] { 1, 2, 0, 4 });
        var y = torch.tensor(new float[] { 1, 0, 0, 4 });
        Assert.Equal(10 * Math.Log10(21.0 / 4.0), Fp8Lab.Sqnr(x, y), 9);
        Assert.Equal(1.0 / 3.0, Fp8Lab.FlushedShare(x, y), 9);
        var mask = torch.tensor(new[] { true, false, true, true });
        Assert.True(double.IsPositiveInfinity(Fp8Lab.Sqnr(x, y, mask)));
        Assert.Throws<WhaleArgumentException>(() => Fp8Lab.MakeOutlierTensor(4, 4, OutlierKind.Channels, 5, 10, 0));
        // Contiguous placement: 8 adjacent channels starting at a multiple of 8 (one 128-wide tile), ×factor exactly.
        var (xo, bulk) = Fp8Lab.MakeOutlierTensor(16, 256, OutlierKind.Channels, 8, 1000, seed: 3);
        var cols = Enumerable.Range(0, 256).Where(c => !bulk[0, c].item<bool>()).ToArray();
        Assert.Equal(8, cols.Length);
        Assert.Equal(0, cols[0] % 8);
        Assert.Equal(Enumerable.Range(cols[0], 8), cols);
        var (xr, bulkR) = Fp8Lab.MakeOutlierTensor(16, 256, OutlierKind.Tokens, 3, 1000, seed: 3, OutlierPlacement.Random);
        Assert.Equal(3 * 256, bulkR.logical_not().sum().item<long>());
    }
}

public class Fp8AnalysisTests
{
    public Fp8AnalysisTests() => WhaleTech.Runtime.Backend.Initialize();

    [Fact]
    public void AnalyzesEveryFloatTensorAndWritesARoundTrip()
    {
        var dir = Directory.CreateTempSubdirectory("whale-fp8-").FullName;
        try
        {
            var path = Path.Combine(dir, "m.safetensors");
            using (var scope = NewDisposeScope())
                WhaleTech.IO.SafeTensorsWriter.Write(path, new List<(string, Tensor)>
                {
                    ("w", torch.randn(256, 130, generator: new torch.Generator(1))),
                    ("b", torch.randn(7, generator: new torch.Generator(2)).to_type(ScalarType.BFloat16)),
                    ("ids", torch.arange(5)),
                });
            var rows = Fp8Analysis.Analyze(path);
            Assert.Equal(6, rows.Count);                                     // 2 float tensors × 3 granularities
            Assert.All(rows.Where(r => r.Name == "w"), r => Assert.InRange(r.SqnrDb, 30, 33));
            var output = Path.Combine(dir, "rt.safetensors");
            Fp8Analysis.WriteRoundTrip(path, output);
            var back = WhaleTech.IO.SafeTensorsFile.Open(output);
            using var w = back.ToTensor("w");
            using var expected = Fp8Quantizer.FakeQuantize(WhaleTech.IO.SafeTensorsFile.Open(path).ToTensor("w"), Fp8Format.E4M3, Fp8Granularity.Block);
            Assert.True(w.allclose(expected, 0, 0));
            Assert.Equal(ScalarType.BFloat16, back.ToTensor("b").dtype);
            Assert.Equal(new long[] { 0, 1, 2, 3, 4 }, back.ToTensor("ids").data<long>().ToArray());
            Assert.Throws<WhaleArgumentException>(() => Fp8Analysis.Analyze(Path.Combine(dir, "missing.safetensors")));
        }
        finally { Directory.Delete(dir, true); }
    }
}
