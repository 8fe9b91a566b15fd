using TorchSharp;
using WhaleTech.Fp8;
using WhaleTech.Runtime;
using static TorchSharp.torch;

namespace WhaleTech.Tests.Fp8;

public class Fp8LinearTests
{
    public Fp8LinearTests() => Backend.Initialize();

    static double RelErr(Tensor a, Tensor b) => ((a - b).norm() / b.norm()).item<float>();

    static (Fp8Linear Lin, Tensor X, Tensor G) Setup(Fp8Recipe recipe, long n = 256, long k = 256, long m = 384, bool bias = true)
    {
        torch.manual_seed(11);
        var lin = new Fp8Linear(k, m, bias, recipe, initStd: 0.05);
        if (bias) using (torch.no_grad()) lin.bias!.normal_(0, 0.1);
        var x = torch.randn(n, k).requires_grad_(true);
        var g = torch.randn(n, m) * 1e-3;                                  // upstream gradient dL/dy
        return (lin, x, g);
    }

    [Fact]
    public void Fp32RecipeHasExactlyNnLinearsForwardAndGradients()
    {
        using var scope = NewDisposeScope();
        var (lin, x, g) = Setup(Fp8Recipe.Fp32, 20, 30, 10);
        var y = lin.forward(x);
        (y * g).sum().backward();
        var xr = x.detach().clone().requires_grad_(true);
        var wr = lin.weight.detach().clone().requires_grad_(true);
        var br = lin.bias!.detach().clone().requires_grad_(true);
        var yr = nn.functional.linear(xr, wr, br);
        (yr * g).sum().backward();
        Assert.True(y.allclose(yr, 1e-5, 1e-6));
        Assert.True(x.grad!.allclose(xr.grad!, 1e-5, 1e-7));
        Assert.True(lin.weight.grad!.allclose(wr.grad!, 1e-5, 1e-7));
        Assert.True(lin.bias.grad!.allclose(br.grad!, 1e-5, 1e-7));
    }

    [Fact]
    public void Fp32RecipeAgreesWithFiniteDifferences()
    {
        using var scope = NewDisposeScope();
        var (lin, x, g) = Setup(Fp8Recipe.Fp32, 4, 5, 3);
        var xd = x.detach().to_type(ScalarType.Float64);
        var wd = lin.weight.detach().to_type(ScalarType.Float64);
        var bd = lin.bias!.detach().to_type(ScalarType.Float64);
        var gd = g.to_type(ScalarType.Float64);
        double Loss(Tensor xx, Tensor ww) => (nn.functional.linear(xx, ww, bd) * gd).sum().item<double>();
        (lin.forward(x) * g).sum().backward();
        const double h = 1e-6;
        for (int i = 0; i < 3; i++)
        {
            var e = torch.zeros_like(wd); e[i, i] = h;
            double fd = (Loss(xd, wd + e) - Loss(xd, wd - e)) / (2 * h);
            Assert.Equal(fd, lin.weight.grad![i, i].item<float>(), 1e-6);
            var ex = torch.zeros_like(xd); ex[i, i] = h;
            double fdx = (Loss(xd + ex, wd) - Loss(xd - ex, wd)) / (2 * h);
            Assert.Equal(fdx, x.grad![i, i].item<float>(), 1e-6);
        }
    }

    [Fact]
    public void DeepSeekV3GemmsUseTheDocumentedQuantizedOperands()
    {
        using var scope = NewDisposeScope();
        var r = Fp8Recipe.DeepSeekV3;
        var (lin, x, g) = Setup(r);
        var y = lin.forward(x);
        (y * g).sum().backward();
        Tensor Q(Tensor t, Fp8Granularity gr) => Fp8Quantizer.FakeQuantize(t.detach().contiguous(), Fp8Format.E4M3, gr);
        Tensor Bf(Tensor t) => t.to_type(ScalarType.BFloat16).to_type(ScalarType.Float32);
        var xq = Q(x, Fp8Granularity.Tile);
        var wq = Q(lin.weight, Fp8Granularity.Block);
        var yExpected = Bf(xq.matmul(wq.t()) + lin.bias!.detach());
        Assert.True(y.allclose(yExpected, 0, 0));
        var dxExpected = Bf(Q(g, Fp8Granularity.Tile).matmul(wq));                            // Dgrad
        Assert.True(x.grad!.allclose(dxExpected, 0, 0));
        var dwExpected = Q(g.t(), Fp8Granularity.Tile).matmul(Q(xq.t(), Fp8Granularity.Tile).t());   // Wgrad, requantized along N
        Assert.True(lin.weight.grad!.allclose(dwExpected, 1e-6, 0));
        Assert.True(lin.bias.grad!.allclose(g.sum(0L), 1e-6, 0));
        // Requantizing matters: the forward tiles transposed are not what the Wgrad GEMM sees.
        Assert.False(Q(xq.t(), Fp8Granularity.Tile).allclose(xq.t(), 0, 0));
    }

    [Theory]
    [InlineData("deepseek-v3", 0.06)]
    [InlineData("hybrid-tensor", 0.12)]
    [InlineData("bf16", 0.01)]
    public void QuantizedGradientsStayCloseToExactOnes(string name, double tolerance)
    {
        // E4M3 rounds each operand with relative error ≤ 2^-4 (E5M2: 2^-3); errors of K independent products
        // average out in a GEMM, so the relative Frobenius error of y, dx, dW stays well below the per-value bound.
        using var scope = NewDisposeScope();
        var recipe = Fp8Recipe.Parse("recipe", name);
        var (lin, x, g) = Setup(recipe);
        var y = lin.forward(x);
        (y * g).sum().backward();
        var xr = x.detach().clone().requires_grad_(true);
        var wr = lin.weight.detach().clone().requires_grad_(true);
        var yr = nn.functional.linear(xr, wr, lin.bias!.detach());
        (yr * g).sum().backward();
        Assert.True(RelErr(y, yr) < tolerance, $"y {RelErr(y, yr)}");
        Assert.True(RelErr(x.grad!, xr.grad!) < tolerance, $"dx {RelErr(x.grad!, xr.grad!)}");
        Assert.True(RelErr(lin.weight.grad!, wr.grad!) < tolerance, $"dW {RelErr(lin.weight.grad!, wr.grad!)}");
    }

    [Fact]
    public void UnscaledE4M3GradientsUnderflow()
    {
        // Without a scale, every gradient below 2^-10 (half the smallest E4M3 subnormal) becomes 0.
        using var scope = NewDisposeScope();
        var (lin, x, _) = Setup(Fp8Recipe.UnscaledE4M3);
        var g = torch.randn(x.shape[0], lin.OutFeatures).clamp(-5, 5) * 1e-4;      // |g| ≤ 5e-4 < 2^-10
        (lin.forward(x) * g).sum().backward();
        Assert.True(x.grad!.eq(0).all().item<bool>());
        Assert.True(lin.weight.grad!.eq(0).all().item<bool>());
        var (scaledLin, x2, _) = Setup(Fp8Recipe.DeepSeekV3);                      // with scales they survive
        (scaledLin.forward(x2) * g).sum().backward();
        Assert.True(x2.grad!.ne(0).to_type(ScalarType.Float32).mean().item<float>() > 0.99);
    }

    [Fact]
    public void HandlesLeadingDimsNoBiasAndBadShapes()
    {
        using var scope = NewDisposeScope();
        var lin = new Fp8Linear(64, 32, false, Fp8Recipe.DeepSeekV3);
        var x = torch.randn(2, 3, 64).requires_grad_(true);
        var y = lin.forward(x);
        Assert.Equal(new long[] { 2, 3, 32 }, y.shape);
        y.sum().backward();
        Assert.Equal(x.shape, x.grad!.shape);
        Assert.Null(lin.bias);
        Assert.Equal(["weight"], lin.named_parameters().Select(p => p.name).ToArray());
        Assert.Throws<WhaleArgumentException>(() => lin.forward(torch.randn(3, 63)));
    }

    [Fact]
    public void FactoryKeepsDeepSeekIslandsInHighPrecisionAndSwitchesRecipes()
    {
        using var scope = NewDisposeScope();
        var f = Fp8Linears.Factory(Fp8Recipe.DeepSeekV3);
        Assert.IsType<Fp8Linear>(f(16, 16, false, "model.layers.0.mlp.experts.3.gate_proj"));
        Assert.IsType<Fp8Linear>(f(16, 16, false, "model.layers.0.self_attn.q_a_proj"));
        Assert.IsNotType<Fp8Linear>(f(16, 16, false, "model.layers.0.mlp.gate"));
        Assert.IsNotType<Fp8Linear>(f(16, 16, false, "lm_head"));
        var custom = Fp8Linears.Factory(Fp8Recipe.Bf16, keepHighPrecision: n => n.Contains("o_proj"));
        Assert.IsNotType<Fp8Linear>(custom(16, 16, false, "model.layers.0.self_attn.o_proj"));
        var seq = nn.Sequential(("a", (nn.Module<Tensor, Tensor>)new Fp8Linear(8, 8, true, Fp8Recipe.Bf16)), ("b", nn.Linear(8, 8)), ("c", new Fp8Linear(8, 8, true, Fp8Recipe.Bf16)));
        Assert.Equal(2, Fp8Linears.SetRecipe(seq, Fp8Recipe.DeepSeekV3));
        Assert.Throws<WhaleArgumentException>(() => Fp8Recipe.Parse("--recipe", "fp4"));
    }

    [Fact]
    public void TrainsATinyRegressionWithTheDeepSeekRecipe()
    {
        using var outer = NewDisposeScope();
        torch.manual_seed(5);
        var lin = new Fp8Linear(128, 16, true, Fp8Recipe.DeepSeekV3, initStd: 0.01);
        var target = torch.randn(16, 128) * 0.1;
        var opt = torch.optim.Adam(lin.parameters(), lr: 1e-2);
        double first = 0, last = 0;
        for (int step = 0; step < 60; step++)
        {
            using var scope = NewDisposeScope();
            var x = torch.randn(64, 128);
            var loss = (lin.forward(x) - x.matmul(target.t())).square().mean();
            opt.zero_grad();
            loss.backward();
            opt.step();
            if (step == 0) first = loss.item<float>();
            last = loss.item<float>();
        }
        Assert.True(last < first * 0.2, $"{first} → {last}");
    }

    [Fact]
    public void RealFp8GemmsMatchTheSimulatedRecipeInOutputsAndGradients()
    {
        // The simulator's claim, checked against real float8 GEMMs (torch._scaled_mm on CPU): the same per-tensor
        // codes and scales give the same products; only the float32 summation order differs (≈ 1e-7 relative),
        // plus a rare one-ulp flip where y and dx are rounded to bfloat16.
        using var scope = NewDisposeScope();
        var (sim, x1, g) = Setup(Fp8Recipe.HybridPerTensor, 64, 128, 96);
        var (real, x2, _) = Setup(Fp8Recipe.HybridPerTensorReal, 64, 128, 96);
        var y1 = sim.forward(x1); (y1 * g).sum().backward();
        var y2 = real.forward(x2); (y2 * g).sum().backward();
        Assert.True(RelErr(y2, y1) < 1e-3, $"y {RelErr(y2, y1)}");
        Assert.True(RelErr(x2.grad!, x1.grad!) < 1e-3, $"dx {RelErr(x2.grad!, x1.grad!)}");
        Assert.True(RelErr(real.weight.grad!, sim.weight.grad!) < 1e-5, $"dW {RelErr(real.weight.grad!, sim.weight.grad!)}");
        Assert.True(RelErr(real.bias!.grad!, sim.bias!.grad!) < 1e-6);
        // A recipe with neither per-tensor scales nor DeepSeek-V3's tiles and blocks cannot run on _scaled_mm: a clear error.
        var bad = Fp8Recipe.HybridPerTensorReal with { Activation = OperandRecipe.Fp8(Fp8Format.E4M3, Fp8Granularity.PerRow) };
        var (lin, x3, _) = Setup(bad, 16, 32, 16);
        Assert.Throws<WhaleArgumentException>(() => lin.forward(x3));
    }

    [Fact]
    public void ScaledMatmulStoresOneBytePerElementAndChecksItsInputs()
    {
        using var scope = NewDisposeScope();
        var a = torch.randn(32, 64, generator: new torch.Generator(1));
        var b = torch.randn(48, 64, generator: new torch.Generator(2));
        using var qa = Fp8ScaledMatmul.Quantize(a, Fp8Format.E4M3);
        using var qb = Fp8ScaledMatmul.Quantize(b, Fp8Format.E4M3);
        Assert.Equal(1, qa.Data.ElementSize);
        var c = Fp8ScaledMatmul.Apply(qa.Data, qb.Data.t(), qa.Scale, qb.Scale);                             // [32, 48]
        var expected = (qa.Data.to_type(ScalarType.Float32) * qa.Scale).matmul((qb.Data.to_type(ScalarType.Float32) * qb.Scale).t());
        Assert.True(RelErr(c, expected) < 1e-6);
        Assert.Throws<WhaleArgumentException>(() => Fp8ScaledMatmul.Apply(a, qb.Data.t(), qa.Scale, qb.Scale));          // not float8
        Assert.Throws<WhaleArgumentException>(() => Fp8ScaledMatmul.Apply(qa.Data, qb.Data, qa.Scale, qb.Scale));         // K mismatch
    }
}
