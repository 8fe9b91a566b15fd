// Tests of the MLA exercises: hand-computed values, DeepSeek-V3's numbers, and agreement with WhaleTech's own
// implementation (src/WhaleTech/Attention/KvAccounting.cs; MultiHeadLatentAttention.LatentCache's layout).
// The absorbed attention is checked against the naive one (the same function as MultiHeadLatentAttention's
// materialized path) within an fp32 rounding bound derived below.
using TorchSharp;
using WhaleTech.Attention;
using static TorchSharp.torch;

namespace WhaleTech.Exercises.Mla;

public class MlaExerciseTests
{
    // DeepSeek-V3: 61 layers, 128 heads of 128, GQA row with 8 KV heads (as KvShape.From), d_c = 512, d_h^R = 64.
    static readonly AttentionDims V3 = new(61, 128, 128, 8, 512, 64);
    static readonly KvShape V3Shape = new(61, 128, 128, 8, 512, 64, 128, 128);

    [Theory]
    [InlineData(KvKind.Mha, 32768L)]     // 2·128·128
    [InlineData(KvKind.Gqa, 2048L)]      // 2·8·128
    [InlineData(KvKind.Mqa, 256L)]       // 2·128
    [InlineData(KvKind.MlaLatent, 576L)] // 512 + 64
    public void Exercise1_ElementsPerTokenPerLayer_DeepSeekV3(KvKind kind, long expected)
    {
        Assert.Equal(expected, MlaExercises.ElementsPerTokenPerLayer(kind, V3));
        var layout = kind switch { KvKind.Mha => KvLayout.Mha, KvKind.Gqa => KvLayout.Gqa, KvKind.Mqa => KvLayout.Mqa, _ => KvLayout.MlaLatent };
        Assert.Equal(KvAccounting.ElementsPerTokenPerLayer(V3Shape, layout), MlaExercises.ElementsPerTokenPerLayer(kind, V3));
    }

    [Fact]
    public void Exercise1_CacheBytes()
    {
        // BF16, one sequence of 128K tokens: 576·61·131072·2 B = 8.58 GiB (MLA) vs 32768·61·131072·2 B = 488 GiB (MHA)
        Assert.Equal(576.0 * 61 * 131072 * 2, MlaExercises.CacheBytes(KvKind.MlaLatent, V3, 1, 131072, 2));
        Assert.Equal(488.0, MlaExercises.CacheBytes(KvKind.Mha, V3, 1, 131072, 2) / (1L << 30), 1e-9);
        // per token per layer in BF16: 1152 B for MLA, the "MLA latent" row of `whale kv`
        Assert.Equal(1152.0, MlaExercises.CacheBytes(KvKind.MlaLatent, V3 with { Layers = 1 }, 1, 1, 2));
        var small = new AttentionDims(4, 8, 16, 2, 64, 8);
        var smallShape = new KvShape(4, 8, 16, 2, 64, 8, 16, 16);
        foreach (var (kind, layout) in new[] { (KvKind.Mha, KvLayout.Mha), (KvKind.Gqa, KvLayout.Gqa), (KvKind.Mqa, KvLayout.Mqa), (KvKind.MlaLatent, KvLayout.MlaLatent) })
            Assert.Equal(KvAccounting.CacheBytes(smallShape, layout, 3, 1000, 4), MlaExercises.CacheBytes(kind, small, 3, 1000, 4));
    }

    [Fact]
    public void Exercise2_AbsorbedAttention_HandComputed()
    {
        // H = 1, Dn = Dr = Dv = 1, Dc = 2, S = 2, one query (T = 1), scale 1. W_UK = [1, 0] reads latent[0] as the key,
        // W_UV = [0, 1] reads latent[1] as the value. Scores: q^C·k^C + q^R·k^R = 0 + ln3 and ln3 + ln3 → p = [¼, ¾];
        // values 2 and 6 → o = ½ + 9/2 = 5.
        double ln3 = Math.Log(3);
        var qNope = torch.tensor(new[] { 1f }, [1, 1, 1]);
        var qRope = torch.tensor(new[] { 1f }, [1, 1, 1]);
        var latent = torch.tensor(new[] { 0f, 2f, (float)ln3, 6f }, [2, 2]);
        var kRope = torch.tensor(new[] { (float)ln3, (float)ln3 }, [2, 1]);
        var wUK = torch.tensor(new[] { 1f, 0f }, [1, 1, 2]);
        var wUV = torch.tensor(new[] { 0f, 1f }, [1, 1, 2]);
        var o = MlaExercises.AbsorbedAttention(qNope, qRope, latent, kRope, wUK, wUV, 1.0);
        Assert.Equal(new long[] { 1, 1, 1 }, o.shape);
        Assert.Equal(5.0, o.item<float>(), 1e-5);            // ln 3 rounded to fp32 and ~10 fp32 roundings of values ≤ 6 (ulp ≤ 4.8e-7): < 5e-6
    }

    [Theory]
    [InlineData(4, 3, 9, 8, 4, 32, 8)]     // a decode chunk of 3 over 9 keys
    [InlineData(2, 1, 17, 16, 8, 64, 16)]  // one decoded token: DeepSeek-V3's Dc = 4·Dn, Dr = Dn/2 ratios
    [InlineData(3, 5, 5, 8, 4, 16, 12)]    // prefill: T = S, fully causal
    public void Exercise2_AbsorbedEqualsNaive(int H, int T, int S, int Dn, int Dr, int Dc, int Dv)
    {
        var g = new torch.Generator((ulong)(H * 100 + S));
        var qNope = torch.randn(H, T, Dn, generator: g);
        var qRope = torch.randn(H, T, Dr, generator: g);
        var latent = torch.randn(S, Dc, generator: g);
        var kRope = torch.randn(S, Dr, generator: g);
        var wUK = torch.randn(H, Dn, Dc, generator: g) / Math.Sqrt(Dc);
        var wUV = torch.randn(H, Dv, Dc, generator: g) / Math.Sqrt(Dc);
        double scale = 1 / Math.Sqrt(Dn + Dr);
        var absorbed = MlaExercises.AbsorbedAttention(qNope, qRope, latent, kRope, wUK, wUV, scale);
        var naive = MlaExercises.NaiveAttention(qNope, qRope, latent, kRope, wUK, wUV, scale);
        Assert.Equal(naive.shape, absorbed.shape);
        var bound = RoundingBound(qNope, qRope, latent, kRope, wUK, wUV, scale);
        var diff = (absorbed - naive).abs().to_type(ScalarType.Float64);
        Assert.True(diff.le(bound).all().item<bool>(), $"max |Δ| {diff.max().item<double>():E2}, bound {bound.min().item<double>():E2} … {bound.max().item<double>():E2}");
    }

    /// <summary>
    /// An upper bound on |absorbed − naive| per output element, from the standard fp32 error bounds (u = 2^-24,
    /// γ_n = n·u / (1 − n·u) for a sum of n products; Higham, "Accuracy and Stability of Numerical Algorithms", §3.1).
    /// Both compute the same exact bilinear forms in different association orders:
    ///   score_j = q^C·(W_UK c_j) + q^R·k^R_j = (W_UKᵀ q^C)·c_j + q^R·k^R_j. Each order is within γ_n·M_j of the exact
    ///   value, M_j = |q^C|ᵀ|W_UK||c_j| + |q^R|·|k^R_j| and n = Dn + Dc + Dr, so the two scaled scores differ by
    ///   δ_j ≤ 2γ_n·scale·M_j (+ one rounding each for ·scale, folded into γ_{n+1}).
    ///   A score perturbation δ moves each softmax probability by at most a factor e^{±2·max δ}; softmax's own
    ///   rounding adds ≤ γ_{S+2} relative in each path.
    ///   o = Σ_j p_j (W_UV c_j) and W_UV(Σ_j p_j c_j) are again one bilinear form: each within γ_{S+Dc}·Σ_j p_j |W_UV||c_j|.
    /// Together: |Δo| ≤ (e^{2·max δ} − 1 + 2γ_{S+2} + 2γ_{S+Dc}) · Σ_j p_j (|W_UV||c_j|), evaluated in float64, with a
    /// factor 2 for the second-order terms this first-order bound drops. Typical errors are ~100× below it.
    /// </summary>
    static Tensor RoundingBound(Tensor qNope, Tensor qRope, Tensor latent, Tensor kRope, Tensor wUK, Tensor wUV, double scale)
    {
        static Tensor D(Tensor t) => t.to_type(ScalarType.Float64);
        double u = Math.Pow(2, -24);
        double Gamma(long n) => n * u / (1 - n * u);
        long T = qNope.shape[1], S = latent.shape[0], Dn = qNope.shape[2], Dr = qRope.shape[2], Dc = latent.shape[1];
        var m = torch.matmul(torch.matmul(D(qNope).abs(), D(wUK).abs()), D(latent).abs().t())
              + torch.matmul(D(qRope).abs(), D(kRope).abs().t());                                   // [H, T, S] M_j
        var mask = MlaExercises.CausalMask(T, S).to_type(ScalarType.Float64);
        var visible = mask.eq(0);                                                                   // [T, S]
        var delta = (2 * Gamma(Dn + Dc + Dr + 1) * scale * m).masked_fill(visible.logical_not(), 0).amax([2], keepdim: true); // [H, T, 1]
        var exactScores = (torch.matmul(torch.matmul(D(qNope), D(wUK)), D(latent).t()) + torch.matmul(D(qRope), D(kRope).t())) * scale + mask;
        var p = exactScores.softmax(-1);                                                            // [H, T, S] float64
        var absValues = torch.matmul(D(latent).abs(), D(wUV).abs().transpose(1, 2));                // [H, S, Dv] |W_UV||c_j|
        var factor = (2 * delta).exp() - 1 + 2 * Gamma(S + 2) + 2 * Gamma(S + Dc);
        return 2 * factor * torch.matmul(p, absValues);                                             // [H, T, Dv]
    }

    [Fact]
    public void Exercise3_AppendToLatentCache_MatchesTheLibraryLayout()
    {
        const int B = 2, C = 6, Dc = 4, Dr = 2;
        using var lib = new MultiHeadLatentAttention.LatentCache(B, C, Dc, Dr, ScalarType.Float32, torch.CPU);
        var g = new torch.Generator(7);
        var latent1 = torch.randn(B, 3, Dc, generator: g); var rope1 = torch.randn(B, 3, Dr, generator: g);  // prefill 3
        var latent2 = torch.randn(B, 1, Dc, generator: g); var rope2 = torch.randn(B, 1, Dr, generator: g);  // decode 1
        var view1 = MlaExercises.AppendToLatentCache(lib.KV, latent1, rope1, 0);
        var view2 = MlaExercises.AppendToLatentCache(lib.KV, latent2, rope2, 3);
        Assert.Equal(new long[] { B, 3, Dc + Dr }, view1.shape);
        Assert.Equal(new long[] { B, 4, Dc + Dr }, view2.shape);
        // the library reads the latent and k^R through its own views of the same tensor
        Assert.True(Same(lib.Latent.narrow(1, 0, 3), latent1));
        Assert.True(Same(lib.KRope.narrow(1, 0, 3), rope1));
        Assert.True(Same(lib.Latent.narrow(1, 3, 1), latent2));
        Assert.True(Same(lib.KRope.narrow(1, 3, 1), rope2));
        Assert.Equal(0, lib.KV.narrow(1, 4, 2).abs().sum().item<float>());            // untouched slots stay empty
        Assert.True(Same(view2, lib.KV.narrow(1, 0, 4)));
        view2[0, 0, 0] = torch.tensor(42f);                                            // a view, not a copy
        Assert.Equal(42f, lib.KV[0, 0, 0].item<float>());
        Assert.Throws<ArgumentOutOfRangeException>(() => MlaExercises.AppendToLatentCache(lib.KV, latent1, rope1, 4)); // 4 + 3 > 6
        Assert.Throws<ArgumentOutOfRangeException>(() => MlaExercises.AppendToLatentCache(lib.KV, latent1, rope1, -1));
    }

    [Fact]
    public void Exercise3_DecodeLoopWithTheCacheEqualsFullNaiveAttention()
    {
        // The whole MLA decode path: prefill 4 tokens, then decode 3 one at a time, each step appending its latent and
        // k^R to the cache and attending (absorbed) over the cached prefix. Every output equals full-sequence naive
        // attention's row for that position, within the bound of Exercise2 (recomputed for each step's shapes).
        const int H = 2, Dn = 8, Dr = 4, Dc = 16, Dv = 8, S = 7, Prefill = 4;
        var g = new torch.Generator(11);
        var qNope = torch.randn(H, S, Dn, generator: g); var qRope = torch.randn(H, S, Dr, generator: g);
        var latent = torch.randn(S, Dc, generator: g); var kRope = torch.randn(S, Dr, generator: g);
        var wUK = torch.randn(H, Dn, Dc, generator: g) / 4; var wUV = torch.randn(H, Dv, Dc, generator: g) / 4;
        double scale = 1 / Math.Sqrt(Dn + Dr);
        var full = MlaExercises.NaiveAttention(qNope, qRope, latent, kRope, wUK, wUV, scale);        // [H, S, Dv]
        var cache = torch.zeros(1, 16, Dc + Dr);                                                    // B = 1, capacity 16
        long start = 0;
        foreach (int t in new[] { Prefill, 1, 1, 1 })
        {
            var keys = MlaExercises.AppendToLatentCache(cache, latent.narrow(0, start, t).unsqueeze(0), kRope.narrow(0, start, t).unsqueeze(0), start)[0]; // [start + t, Dc + Dr]
            var (qn, qr) = (qNope.narrow(1, start, t), qRope.narrow(1, start, t));
            var (lat, kr) = (keys.narrow(1, 0, Dc), keys.narrow(1, Dc, Dr));
            var o = MlaExercises.AbsorbedAttention(qn, qr, lat, kr, wUK, wUV, scale);              // [H, t, Dv]
            var bound = RoundingBound(qn, qr, lat, kr, wUK, wUV, scale);
            Assert.True((o - full.narrow(1, start, t)).abs().to_type(ScalarType.Float64).le(bound).all().item<bool>(), $"step at {start}");
            start += t;
        }
    }

    static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();
}
