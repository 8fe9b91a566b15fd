using TorchSharp;
using WhaleTech.Attention;
using WhaleTech.Core;
using WhaleTech.Model;
using static TorchSharp.torch;

namespace WhaleTech.Tests.Model;

// Tolerances: the exact construction differs from the source only by fp32 rounding — ~2⁻²⁴ ≈ 6e-8 relative per
// operation, a few hundred accumulated operations per logit, and the linearized latent norm's residual
// mean(c²)/(2ε) ≤ 2⁻³¹ — so 1e-5 relative to the logit scale is a bound with a wide margin; any real mismatch
// (a wrong RoPE frequency, a missing scale factor, an active norm) is ≥ 1e-2 on these sharp tiny models.
public class MlaConversionTests
{
    internal static ModelConfig Source(string attention, int kvHeads = 4, int layers = 2) => new ModelConfig
    {
        VocabSize = 32, HiddenSize = 32, IntermediateSize = 64, NumHiddenLayers = layers, NumAttentionHeads = 4,
        NumKeyValueHeads = kvHeads, HeadDim = 8, Attention = attention, MaxPositionEmbeddings = 64,
    }.Validate();

    /// <summary>A model with weights large enough that attention is sharp (random 0.02-init models attend uniformly,
    /// where every conversion looks exact).</summary>
    internal static DeepSeekLM Sharp(ModelConfig cfg, int seed = 7, double std = 0.35)
    {
        torch.manual_seed(seed);
        var m = new DeepSeekLM(cfg);
        using (torch.no_grad())
            foreach (var (name, p) in m.named_parameters())
                if (name.Contains("self_attn")) p.normal_(0, std);
                else if (name.Contains("embed")) p.normal_(0, 1.0);
        m.eval();
        return m;
    }

    static Tensor Ids(int batch, int length, int seed) { torch.manual_seed(seed); return torch.randint(0, 32, [batch, length]); }

    /// <summary>‖a − b‖/‖b‖ over all logits (a whole-function error; the max entry is too noisy to be monotone in rank).</summary>
    static double RelRms(Tensor a, Tensor b) => (a - b).norm().item<float>() / b.norm().item<float>();

    static double MaxRelDiff(Tensor a, Tensor b) => (a - b).abs().max().item<float>() / Math.Max(1.0, b.abs().max().item<float>());

    [Fact]
    public void MqaToMlaAtTheSameKvBytesComputesTheSameLogits()
    {
        using var src = Sharp(Source("mqa"));
        var (mla, report) = MlaConversion.FromStandard(src);
        using var _ = mla;
        mla.eval();
        Assert.True(report.Exact);
        Assert.Equal(report.SourceKvElementsPerTokenPerLayer, report.TargetKvElementsPerTokenPerLayer);    // 2·Dh = Dc + Dr
        Assert.Equal(16, report.SourceKvElementsPerTokenPerLayer);
        Assert.Equal("mla", mla.Config.Attention);
        Assert.Equal(KvAccounting.ElementsPerToken(KvShape.From(src.Config, null), KvAccounting.LayoutOf(src.Config)),
            KvAccounting.ElementsPerToken(KvShape.From(mla.Config, null), KvAccounting.LayoutOf(mla.Config)));
        using var g = torch.no_grad();
        var ids = Ids(3, 24, 1);
        var expected = src.forward(ids);
        foreach (var mode in new[] { MlaMode.Naive, MlaMode.Absorbed })
        {
            mla.SetMlaMode(mode);
            Assert.True(MaxRelDiff(mla.forward(ids), expected) <= 1e-5, $"{mode}: {MaxRelDiff(mla.forward(ids), expected)}");
        }
        // cached decode through the latent cache: prompt of 8, then one token at a time
        mla.SetMlaMode(MlaMode.Auto);
        using var cache = mla.CreateCache(3, 24);
        var parts = new List<Tensor> { mla.Forward(ids.narrow(1, 0, 8), cache: cache) };
        for (int t = 8; t < 24; t++) parts.Add(mla.Forward(ids.narrow(1, t, 1), cache: cache));
        Assert.True(MaxRelDiff(torch.cat(parts, 1), expected) <= 1e-5);
        // the function is not trivially insensitive: a different source gives clearly different logits
        using var other = Sharp(Source("mqa"), seed: 8);
        Assert.True(MaxRelDiff(other.forward(ids), expected) > 1e-2);
    }

    [Fact]
    public void GqaConversionIsExactWithoutRelativeRotationAndMeasurablyInexactWithIt()
    {
        using var src = Sharp(Source("gqa", kvHeads: 2));
        var (mla, report) = MlaConversion.FromStandard(src);
        using var _ = mla;
        mla.eval();
        Assert.False(report.Exact);                                       // Hkv = 2 keys per frequency, one shared k^R
        Assert.Equal(report.SourceKvElementsPerTokenPerLayer, report.TargetKvElementsPerTokenPerLayer);
        Assert.All(report.LatentRelativeError, e => Assert.True(e < 1e-9));   // rank(M) ≤ 2·Hkv·Dh − Dr: lossless latent
        using var g = torch.no_grad();
        // one token: every query meets its own key at rotation 0, where dropping RoPE on the residual keys is exact
        var one = Ids(4, 1, 2);
        Assert.True(MaxRelDiff(mla.forward(one), src.forward(one)) <= 1e-5);
        var ids = Ids(3, 24, 3);
        double gap = MaxRelDiff(mla.forward(ids), src.forward(ids));
        Assert.True(gap > 1e-4, $"gap {gap}");                            // the residual keys lost their rotation
        Assert.True(double.IsFinite(gap));
    }

    [Fact]
    public void SvdAtFullRankReproducesTheSourceAndItsErrorFallsWithRank()
    {
        // MQA source, both factorizations at Dc = rank(W_V) = Dh: the source exactly
        using var mqa = Sharp(Source("mqa"));
        using var g = torch.no_grad();
        var ids = Ids(2, 20, 4);
        var mqaLogits = mqa.forward(ids);
        foreach (var f in new[] { LatentFactorization.Joint, LatentFactorization.Separate })
        {
            var (m, r) = MlaConversion.FromStandard(mqa, new MlaConversionOptions { Factorization = f, KvLoraRank = 8 });
            using var _ = m;
            m.eval();
            Assert.True(r.Exact, f.ToString());
            Assert.True(MaxRelDiff(m.forward(ids), mqaLogits) <= 1e-5, f.ToString());
        }
        // MHA source with partial RoPE (4 of 8 dims): a full-rank latent is lossless and defines the reference (joint:
        // rank M ≤ D = 32; separate: 32 + 32 — the split pays for keys and values apart); lower ranks approach it
        // monotonically in the weights (Eckart–Young) and in the logits.
        using var mha = Sharp(Source("mha"), std: 0.15);           // milder: at 0.35 rank 4 and 8 both miss by > 100 %
        foreach (var (f, ranks) in new[] { (LatentFactorization.Joint, new[] { 4, 8, 16, 24, 32 }), (LatentFactorization.Separate, new[] { 8, 16, 32, 48, 60 }) })
        {
            var (full, fullReport) = MlaConversion.FromStandard(mha, new MlaConversionOptions { RopeDims = 4, KvLoraRank = 60, Factorization = f });
            using var __ = full;
            full.eval();
            Assert.All(fullReport.LatentRelativeError, e => Assert.True(e < 1e-9));
            var reference = full.forward(ids);
            double prevWeight = double.MaxValue, prevLogit = double.MaxValue;
            foreach (int rank in ranks)
            {
                var (m, r) = MlaConversion.FromStandard(mha, new MlaConversionOptions { RopeDims = 4, KvLoraRank = rank, Factorization = f });
                using var ___ = m;
                m.eval();
                double w = r.LatentRelativeError.Average(), l = RelRms(m.forward(ids), reference);
                Assert.True(w < prevWeight || w < 1e-12, $"{f} rank {rank}: weight error {w} ≥ {prevWeight}");
                Assert.True(l < prevLogit || l <= 1e-5, $"{f} rank {rank}: logit error {l} ≥ {prevLogit}");
                prevWeight = w; prevLogit = l;
            }
            Assert.True(prevLogit <= 1e-5);
        }
    }

    [Theory]
    [InlineData(RopeSelection.High, true)]
    [InlineData(RopeSelection.Uniform, true)]
    [InlineData(RopeSelection.Low, false)]
    public void RopeStrategiesPickPairsAndFitTheta(RopeSelection strategy, bool exactFrequencies)
    {
        using var mha = Sharp(Source("mha", layers: 1));
        var (m, r) = MlaConversion.FromStandard(mha, new MlaConversionOptions { RopeDims = 4, Strategy = strategy });
        using var _ = m;
        Assert.Equal(exactFrequencies, r.FrequenciesExact);
        Assert.Equal(2, r.RopePairs.Length);
        int[] expected = strategy switch { RopeSelection.High => [0, 1], RopeSelection.Uniform => [0, 2], _ => [2, 3] };
        Assert.Equal(expected, r.RopePairs);
        if (strategy == RopeSelection.High) Assert.Equal(Math.Pow(10000, 4.0 / 8), r.RopeTheta, 6);
        if (strategy == RopeSelection.Uniform) Assert.Equal(10000, r.RopeTheta, 6);
        var (n, nr) = MlaConversion.FromStandard(mha, new MlaConversionOptions { RopeDims = 4, Strategy = RopeSelection.Norm });
        using var __ = n;
        Assert.Equal(2, nr.RopePairs.Distinct().Count());
    }

    /// <summary>The 2-norm strategy on calibration tokens ranks pairs by what the queries and keys are on real inputs,
    /// not by weight size: tokens live in hidden dims 0–3 only; pair 3's weights are large but read dims 4–31 (their
    /// activations are exactly 0), pair 1's are moderate on dims 0–3. Weights pick pair 3, activations pair 1.</summary>
    [Fact]
    public void TwoNormOnCalibrationTokensScoresWhatTheModelSees()
    {
        using var mha = Sharp(Source("mha", layers: 1));
        var p = mha.named_parameters().ToDictionary(x => x.name, x => x.parameter);
        using (torch.no_grad())
        {
            var emb = p["model.embed_tokens.weight"];
            emb.zero_();
            emb.narrow(1, 0, 4).normal_(0, 1);
            foreach (var name in new[] { "q_proj", "k_proj" })
            {
                var w = p[$"model.layers.0.self_attn.{name}.weight"].view(4, 4, 2, 32);          // [H, Dh/2 pairs, 2, D]
                w.normal_(0, 0.01);
                w.select(1, 3).zero_();
                w.select(1, 3).narrow(-1, 4, 28).fill_(1.0);
                w.select(1, 1).narrow(-1, 0, 4).fill_(0.3);
            }
        }
        var (a, byWeights) = MlaConversion.FromStandard(mha, new MlaConversionOptions { RopeDims = 2, Strategy = RopeSelection.Norm });
        a.Dispose();
        Assert.Equal([3], byWeights.RopePairs);
        Assert.Equal("weights", byWeights.PairScore);
        var ids = Ids(4, 16, 3);
        var (b, byActivations) = MlaConversion.FromStandard(mha, new MlaConversionOptions { RopeDims = 2, Strategy = RopeSelection.Norm, CalibrationIds = ids });
        b.Dispose();
        Assert.Equal([1], byActivations.RopePairs);
        Assert.Equal("activations (4×16 tokens)", byActivations.PairScore);
        Assert.False(mha.training);                                                                 // eval state restored
        Assert.Throws<WhaleTech.Runtime.WhaleArgumentException>(() => MlaConversion.FromStandard(mha,
            new MlaConversionOptions { RopeDims = 2, Strategy = RopeSelection.Norm, CalibrationIds = torch.full(2, 4, 99L) }));
    }

    [Fact]
    public void BadInputsAreArgumentErrors()
    {
        using var mla = new DeepSeekLM(ModelConfig.Tiny("mla"));
        Assert.Throws<WhaleTech.Runtime.WhaleArgumentException>(() => MlaConversion.FromStandard(mla));
        using var mha = new DeepSeekLM(Source("mha"));
        Assert.Throws<WhaleTech.Runtime.WhaleArgumentException>(() => MlaConversion.FromStandard(mha, new MlaConversionOptions { RopeDims = 3 }));
        Assert.Throws<WhaleTech.Runtime.WhaleArgumentException>(() => MlaConversion.FromStandard(mha, new MlaConversionOptions { KvLoraRank = 0 }));
        Assert.Throws<WhaleTech.Runtime.WhaleArgumentException>(() => MlaConversionOptions.ParseStrategy("middle"));
    }
}
