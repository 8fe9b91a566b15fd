using TorchSharp;
using WhaleTech.Runtime;
using WhaleTech.Training;
using static TorchSharp.torch;
using Parameter = TorchSharp.Modules.Parameter;

namespace WhaleTech.Tests.Training;

/// <summary>AdamWOptimizer: FP32 mode is torch.optim.AdamW bit for bit; BF16 moments (DeepSeek-V3 §3.3) are stored
/// as bfloat16 with round-to-nearest-even, halve the state, and stay within the derived error bound.</summary>
public class AdamWOptimizerTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("whale-adamw-").FullName;
    public void Dispose() { try { Directory.Delete(_dir, true); } catch (IOException) { } }

    /// <summary>BF16 unit roundoff: 8 significant bits (7 stored + 1 implicit) → |fl(x) − x| ≤ 2^-8 |x|.</summary>
    const double U = 1.0 / 256;

    // A small two-layer net as raw parameters: w1 [8, 4], b1 [8], w2 [3, 8], plus `late` [5], which gets no
    // gradient until step 3 (its .grad is null, so it must be skipped and its t must not advance) and is unused
    // again from step 5 on (zero_grad left a zero gradient, not null: it keeps stepping, as in TorchSharp).
    static Parameter[] Net(int seed)
    {
        torch.manual_seed(seed);
        return [new Parameter(randn(8, 4)), new Parameter(randn(8)), new Parameter(randn(3, 8)), new Parameter(randn(5))];
    }

    static Parameter[] Clone(Parameter[] ps) => ps.Select(p => new Parameter(p.detach().clone())).ToArray();

    static Tensor Loss(Parameter[] p, Tensor x, int step)
    {
        var h = (x.matmul(p[0].t()) + p[1]).tanh();                         // [N, 8]
        var loss = h.matmul(p[2].t()).pow(2).mean();                       // [N, 3] → scalar
        return step is 3 or 4 ? loss + p[3].sum().pow(2) : loss;
    }

    static void AssertBitEqual(Tensor a, Tensor b, string what)
        => Assert.True(a.dtype == b.dtype && a.equal(b).all().item<bool>(), $"{what} differs: max |Δ| = {(a.to_type(ScalarType.Float64) - b.to_type(ScalarType.Float64)).abs().max().item<double>()}");

    [Fact]
    public void Fp32IsTorchSharpAdamWBitForBit()
    {
        var ours = Net(11); var theirs = Clone(ours);
        using var a = new AdamWOptimizer([new AdamWParamGroup([ours[0], ours[2]], 1e-2, 0.1), new AdamWParamGroup([ours[1], ours[3]], 3e-3, 0.0)], beta1: 0.9, beta2: 0.95);
        using var t = torch.optim.AdamW(
        [
            new TorchSharp.Modules.AdamW.ParamGroup([theirs[0], theirs[2]], new TorchSharp.Modules.AdamW.Options { LearningRate = 1e-2, weight_decay = 0.1 }),
            new TorchSharp.Modules.AdamW.ParamGroup([theirs[1], theirs[3]], new TorchSharp.Modules.AdamW.Options { LearningRate = 3e-3, weight_decay = 0.0 }),
        ], lr: 1e-2, beta1: 0.9, beta2: 0.95);
        for (int step = 0; step < 7; step++)
        {
            using var scope = torch.NewDisposeScope();
            var x = randn(16, 4);                                               // [N, 4]
            double scale = 1.0 - 0.1 * step;                                    // a schedule, as the trainers set it
            foreach (var (g, k) in a.ParamGroups.Select((g, k) => (g, k))) g.LearningRate = (k == 0 ? 1e-2 : 3e-3) * scale;
            foreach (var (g, k) in t.ParamGroups.Select((g, k) => (g, k))) g.LearningRate = (k == 0 ? 1e-2 : 3e-3) * scale;
            a.zero_grad(); t.zero_grad();
            Loss(ours, x, step).backward();
            Loss(theirs, x, step).backward();
            a.step(); t.step();
        }
        for (int i = 0; i < ours.Length; i++) AssertBitEqual(ours[i], theirs[i], $"parameter {i}");
        Assert.Equal(4, a.StateOf(ours[3]).Step);                               // `late`: steps 3–6, not 0–2
        Assert.Equal(7, a.StateOf(ours[0]).Step);
    }

    [Fact]
    public void TorchSharpFactoryDefaultsAreTheBetasPolicySftAlwaysUsed()
    {
        // PolicyModel.Sft used torch.optim.AdamW(params, lr, weight_decay: 0): TorchSharp 0.107's defaults β = (0.9, 0.999).
        using var t = torch.optim.AdamW(Net(1), 1e-3, weight_decay: 0.0);
        Assert.Equal((0.9, 0.999), t.Betas);
    }

    [Fact]
    public void Bf16MomentsAreBFloat16AndHalveTheState()
    {
        var p = Net(3);
        long n = p.Sum(x => x.numel());
        using var f = new AdamWOptimizer(p, 1e-3, moments: MomentPrecision.Fp32);
        using var b = new AdamWOptimizer(Clone(p), 1e-3, moments: MomentPrecision.Bf16);
        Assert.Equal(8 * n, f.StateBytes);
        Assert.Equal(4 * n, b.StateBytes);
        Assert.Equal(ScalarType.Float32, f.StateOf(p[0]).M.dtype);
        var (m, v, _) = b.StateOf(b.ParamGroups[0].Parameters[0]);
        Assert.Equal(ScalarType.BFloat16, m.dtype);
        Assert.Equal(ScalarType.BFloat16, v.dtype);
        Assert.Equal(ScalarType.Float32, b.ParamGroups[0].Parameters[0].dtype);  // master weights stay FP32
    }

    /// <summary>Round to nearest, ties to even, of a float32 to bfloat16's 16 upper bits (finite inputs).</summary>
    static float Bf16Rne(float x)
    {
        uint bits = BitConverter.SingleToUInt32Bits(x);
        bits += 0x7FFFu + ((bits >> 16) & 1u);
        return BitConverter.UInt32BitsToSingle(bits & 0xFFFF0000u);
    }

    [Fact]
    public void Bf16StoreIsRoundToNearestEvenWithRelativeErrorAtMostTwoToTheMinus8()
    {
        torch.manual_seed(5);
        var p = new Parameter(zeros(4096));
        using var opt = new AdamWOptimizer([p], 1e-3, beta1: 0.9, beta2: 0.95, moments: MomentPrecision.Bf16);
        var g = randn(4096) * torch.exp(randn(4096) * 4);                  // magnitudes over many binades
        p.grad = g.clone();
        opt.step();
        // After one step from zero, the FP32 values before the store are exactly (1 − β1) g and (1 − β2) g².
        var mExact = (g * (float)(1 - 0.9)).data<float>().ToArray();
        var vExact = g.mul(g).mul((float)(1 - 0.95)).data<float>().ToArray();
        var (m, v, _) = opt.StateOf(p);
        var mStored = m.to_type(ScalarType.Float32).data<float>().ToArray();
        var vStored = v.to_type(ScalarType.Float32).data<float>().ToArray();
        double worst = 0;
        for (int i = 0; i < mExact.Length; i++)
        {
            Assert.Equal(BitConverter.SingleToUInt32Bits(Bf16Rne(mExact[i])), BitConverter.SingleToUInt32Bits(mStored[i]));
            Assert.Equal(BitConverter.SingleToUInt32Bits(Bf16Rne(vExact[i])), BitConverter.SingleToUInt32Bits(vStored[i]));
            if (mExact[i] != 0) worst = Math.Max(worst, Math.Abs(mStored[i] - mExact[i]) / Math.Abs(mExact[i]));
        }
        Assert.True(worst <= U, $"worst relative store error {worst} > 2^-8");
        Assert.True(worst > U / 2, $"worst relative store error {worst}: 2^-9 would not be a bound");   // u is 2^-8, not 2^-9
    }

    [Fact]
    public void Bf16StaysWithinTheDerivedBoundOfFp32()
    {
        // L(θ) = Σ c ⊙ θ: the gradient c does not depend on θ, so both runs see the same gradients and the only
        // difference is the BF16 moments. For a constant gradient |m| and v grow monotonically, and the stored
        // moments' relative errors are ≤ ε_m = u/(1 − β1), ε_v = u/(1 − β2) (AdamWOptimizer.cs). Each update
        // η m̂/(√v̂ + ε) (|m̂/√v̂| = 1 here) is then off by at most ε_u = (1 + ε_m)/√(1 − ε_v) − 1, and weight decay
        // only shrinks the difference: |θ_bf16 − θ_fp32| ≤ Σ_t η ε_u = N η ε_u.
        const int n = 200; const double lr = 1e-2, b1 = 0.9, b2 = 0.95;
        torch.manual_seed(7);
        var c = randn(512).sign() * torch.pow(10, torch.rand(512) * 8 - 6);  // |c| in [1e-6, 1e2], both signs
        var init = randn(512);
        var pf = new Parameter(init.clone()); var pb = new Parameter(init.clone());
        using var f = new AdamWOptimizer([pf], lr, 0.01, b1, b2, moments: MomentPrecision.Fp32);
        using var b = new AdamWOptimizer([pb], lr, 0.01, b1, b2, moments: MomentPrecision.Bf16);
        for (int t = 0; t < n; t++)
        {
            using var scope = torch.NewDisposeScope();
            f.zero_grad(); b.zero_grad();
            (pf * c).sum().backward(); (pb * c).sum().backward();
            f.step(); b.step();
        }
        double em = U / (1 - b1), ev = U / (1 - b2), eu = (1 + em) / Math.Sqrt(1 - ev) - 1;
        double bound = n * lr * eu * (1 + 1e-4);                              // + FP32 rounding slack
        double diff = (pf - pb).abs().max().item<float>();
        Console.WriteLine($"max |θ_bf16 − θ_fp32| = {diff:E3}, bound N·η·ε_u = {bound:E3} (ε_u = {eu:P2}), total move N·η = {n * lr}");
        Assert.True(diff <= bound, $"max |Δθ| {diff} exceeds the derived bound {bound}");
        Assert.True(diff > 0, "BF16 moments should change the trajectory a little");
    }

    [Fact]
    public void Bf16SecondMomentStallsWithBeta2Of0999()
    {
        // The limitation documented in AdamWOptimizer.cs: with 1 − β2 = 0.001 < 2^-9 the increments of v round away
        // once v is a fraction of g²; with β2 = 0.95 v̂ stays within u/(1 − β2) of g².
        static double VHat(double beta2, MomentPrecision mp, int steps)
        {
            var p = new Parameter(zeros(1));
            using var opt = new AdamWOptimizer([p], 1e-6, beta2: beta2, moments: mp);
            for (int t = 0; t < steps; t++) { p.grad = ones(1); opt.step(); }
            var v = opt.StateOf(p).V.to_type(ScalarType.Float64).item<double>();
            return v / (1 - Math.Pow(beta2, steps));                          // v̂, and g² = 1
        }
        double fp32 = VHat(0.999, MomentPrecision.Fp32, 3000), bf16 = VHat(0.999, MomentPrecision.Bf16, 3000);
        double bf16Dsv3 = VHat(0.95, MomentPrecision.Bf16, 3000);
        Console.WriteLine($"v̂ after 3000 steps of g = 1: fp32 {fp32:F4}, bf16 β2=0.999 {bf16:F4}, bf16 β2=0.95 {bf16Dsv3:F4}");
        Assert.InRange(fp32, 0.999, 1.001);
        Assert.True(bf16 < 0.5, $"v̂ = {bf16}: expected the BF16 second moment to stall well below g² = 1");
        Assert.InRange(bf16Dsv3, 1 - U / 0.05, 1 + U / 0.05);
    }

    [Theory]
    [InlineData(MomentPrecision.Fp32)]
    [InlineData(MomentPrecision.Bf16)]
    public void SaveLoadContinueEqualsUninterrupted(MomentPrecision mp)
    {
        AdamWOptimizer Make(Parameter[] p) => new([new AdamWParamGroup([p[0], p[2]], 1e-2, 0.1), new AdamWParamGroup([p[1], p[3]], 1e-2)], 0.9, 0.95, moments: mp);
        void Train(AdamWOptimizer opt, Parameter[] p, int from, int to)
        {
            for (int step = from; step < to; step++)
            {
                using var scope = torch.NewDisposeScope();
                torch.manual_seed(100 + step);
                var x = randn(16, 4);
                foreach (var g in opt.ParamGroups) g.LearningRate = 1e-2 / (1 + step);
                opt.zero_grad();
                Loss(p, x, step).backward();
                opt.step();
            }
        }
        var straight = Net(2); var resumed = Clone(straight);
        using var a = Make(straight);
        Train(a, straight, 0, 6);

        using (var first = Make(resumed))
        {
            Train(first, resumed, 0, 4);
            first.Save(Path.Combine(_dir, "opt.safetensors"));
        }
        var copy = Clone(resumed);                                              // fresh parameters, same values
        using var b = Make(copy);
        b.Load(Path.Combine(_dir, "opt.safetensors"));
        Assert.Equal(4, b.StateOf(copy[0]).Step);
        Assert.Equal(1, b.StateOf(copy[3]).Step);
        Train(b, copy, 4, 6);
        for (int i = 0; i < straight.Length; i++)
        {
            AssertBitEqual(straight[i], copy[i], $"parameter {i}");
            AssertBitEqual(a.StateOf(straight[i]).M, b.StateOf(copy[i]).M, $"m of {i}");
            AssertBitEqual(a.StateOf(straight[i]).V, b.StateOf(copy[i]).V, $"v of {i}");
        }
    }

    [Fact]
    public void BadInputIsAWhaleError()
    {
        var p = Net(4);
        Assert.Equal("beta1", Assert.Throws<WhaleArgumentException>(() => new AdamWOptimizer(p, 1e-3, beta1: 1.0)).Parameter);
        Assert.Equal("beta2", Assert.Throws<WhaleArgumentException>(() => new AdamWOptimizer(p, 1e-3, beta2: -0.1)).Parameter);
        Assert.Equal("eps", Assert.Throws<WhaleArgumentException>(() => new AdamWOptimizer(p, 1e-3, eps: double.NaN)).Parameter);
        Assert.Equal("learning_rate", Assert.Throws<WhaleArgumentException>(() => new AdamWOptimizer(p, -1e-3)).Parameter);
        Assert.Equal("weight_decay", Assert.Throws<WhaleArgumentException>(() => new AdamWOptimizer(p, 1e-3, weightDecay: -1)).Parameter);
        Assert.Equal("optimizer_moments", Assert.Throws<WhaleArgumentException>(() => new AdamWOptimizer(p, 1e-3, moments: (MomentPrecision)7)).Parameter);
        Assert.Throws<WhaleArgumentException>(() => new AdamWOptimizer([new AdamWParamGroup([p[0]], 1e-3), new AdamWParamGroup([p[0]], 1e-3)]));
        Assert.Throws<WhaleArgumentException>(() => new AdamWOptimizer([new Parameter(ones(2, dtype: ScalarType.Int64), requires_grad: false)], 1e-3));
        Assert.Equal("--optimizer-moments", Assert.Throws<WhaleArgumentException>(() => MomentPrecisions.Parse("--optimizer-moments", "fp16")).Parameter);
        Assert.Equal(MomentPrecision.Bf16, MomentPrecisions.Parse("x", "BF16"));
        using var opt = new AdamWOptimizer(p, 1e-3);
        Assert.Throws<WhaleArgumentException>(() => opt.LearningRate(double.PositiveInfinity));
        Assert.Throws<WhaleArgumentException>(() => opt.Load(Path.Combine(_dir, "missing.safetensors")));
        // A state written with BF16 moments (or other β2) does not load into an FP32 optimizer.
        using var other = new AdamWOptimizer(Clone(p), 1e-3, moments: MomentPrecision.Bf16);
        other.Save(Path.Combine(_dir, "bf16.safetensors"));
        var e = Assert.Throws<WhaleFormatException>(() => opt.Load(Path.Combine(_dir, "bf16.safetensors")));
        Assert.Contains("optimizer_moments", e.Message);
        using var fewer = new AdamWOptimizer(p.Take(2), 1e-3);
        fewer.Save(Path.Combine(_dir, "two.safetensors"));
        Assert.Throws<WhaleFormatException>(() => opt.Load(Path.Combine(_dir, "two.safetensors")));
    }
}

static class AdamWTestExtensions
{
    public static void LearningRate(this AdamWOptimizer opt, double lr) { foreach (var g in opt.ParamGroups) g.LearningRate = lr; }
}
