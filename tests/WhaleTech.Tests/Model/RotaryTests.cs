using TorchSharp;
using WhaleTech.Model;
using static TorchSharp.torch;
using WhaleTech.Core;

namespace WhaleTech.Tests.Model;

public class RotaryTests
{
    static RotaryEmbedding Rope(RopeScaling? s = null) => new(16, 512, 10000, s);

    [Fact]
    public void RotationPreservesNorms()
    {
        using var scope = torch.NewDisposeScope();
        torch.manual_seed(1);
        var rope = Rope();
        var x = torch.randn(2, 5, 3, 16);                                // [B, T, H, d]
        var pos = torch.arange(5).unsqueeze(0).expand(2, 5) * 37;
        var y = rope.Apply(x, pos);
        var diff = (y.norm(-1) - x.norm(-1)).abs().max().item<float>();
        Assert.True(diff < 1e-5f, $"norm changed by {diff}");
    }

    [Fact]
    public void DotProductDependsOnlyOnOffset()
    {
        using var scope = torch.NewDisposeScope();
        torch.manual_seed(2);
        var rope = Rope(new RopeScaling { Factor = 4, OriginalMaxPositionEmbeddings = 64, MscaleAllDim = 1, Mscale = 1 });
        var q = torch.randn(1, 1, 16); var k = torch.randn(1, 1, 16);
        float Dot(long pq, long pk) => (rope.Apply(q, torch.tensor(new long[] { pq }).view(1, 1)) * rope.Apply(k, torch.tensor(new long[] { pk }).view(1, 1))).sum().item<float>();
        foreach (var (a, b) in new[] { (10L, 3L), (300L, 293L), (57L, 50L) })
            Assert.Equal(Dot(10, 3), Dot(a, b), 3);
        Assert.NotEqual(Dot(10, 3), Dot(10, 4), 3);
    }

    [Fact]
    public void YarnAtFactorOneIsPlainRope()
    {
        using var scope = torch.NewDisposeScope();
        var plain = RotaryEmbedding.InverseFrequencies(16, 10000, null);
        var yarn = RotaryEmbedding.InverseFrequencies(16, 10000, new RopeScaling { Factor = 1.0, OriginalMaxPositionEmbeddings = 64 });
        Assert.Equal(0.0, (plain - yarn).abs().max().item<double>());
        Assert.Equal(1.0, RotaryEmbedding.YarnMscale(1.0, 1.0));
    }

    [Fact]
    public void YarnInterpolatesLowFrequenciesOnly()
    {
        using var scope = torch.NewDisposeScope();
        var plain = RotaryEmbedding.InverseFrequencies(64, 10000, null).data<double>().ToArray();
        var yarn = RotaryEmbedding.InverseFrequencies(64, 10000, new RopeScaling { Factor = 40, OriginalMaxPositionEmbeddings = 4096, BetaFast = 32, BetaSlow = 1 }).data<double>().ToArray();
        Assert.Equal(plain[0], yarn[0], 12);                         // highest frequency kept (extrapolated)
        Assert.Equal(plain[^1] / 40, yarn[^1], 12);                  // lowest frequency divided by the factor
        Assert.Equal(0.1 * Math.Log(40) + 1, RotaryEmbedding.YarnMscale(40, 1), 12);
    }
}

public class RotaryPrecisionTests
{
    [Fact]
    public void TablesStayFp32WhenTheModelIsCastToBf16()
    {
        var model = new DeepSeekLM(ModelConfig.Tiny("mla"));
        model.to(ScalarType.BFloat16);
        var x = torch.ones(1, 1, model.Config.QkRopeHeadDim, dtype: ScalarType.Float32);
        var pos = torch.tensor(new long[] { 200 }).view(1, 1);
        var fresh = new RotaryEmbedding(model.Config.QkRopeHeadDim, model.Config.MaxPositionEmbeddings, model.Config.RopeTheta, null);
        Assert.Equal(0f, (model.Rotary.Apply(x, pos) - fresh.Apply(x, pos)).abs().max().item<float>());
    }
}
