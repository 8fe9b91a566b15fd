using TorchSharp;
using WhaleTech.Core;
using WhaleTech.Moe;
using WhaleTech.Runtime;
using static TorchSharp.torch;
using static WhaleTech.Tests.Moe.MoeTestUtil;

namespace WhaleTech.Tests.Moe;

/// <summary>The one-pass routed sum of a decode step (RoutedDecodeKernel) against the token-loop reference. The
/// kernel runs here on any CPU (RunKernel skips the AVX-512 switch; .NET emulates Vector512 where it is absent).</summary>
public class RoutedDecodeKernelTests
{
    // Each output is a sum of K = 3 weighted expert outputs, each a float32 dot product of length F = 16 over
    // dot products of length D = 32, |terms| ~ 1: a reordered float32 sum differs by a few ulps of ~1 (≈ 1e-7 each),
    // and libtorch's vectorized exp in silu by an ulp; 1e-5 leaves two orders of magnitude of room.
    const double Tol = 1e-5;

    static DeepSeekMoE DecodeLayer(long seed = 1) =>
        Layer(Config(experts: 8, topK: 3, groups: 4, topkGroup: 2, hidden: 32) with { MoeIntermediateSize = 16 }, seed);

    static (Tensor Indices, Tensor Weights) Route(DeepSeekMoE layer, Tensor x)
    {
        var r = layer.gate.Route(x);
        return (r.Indices, r.Weights);
    }

    static double MaxDiff(Tensor a, Tensor b) => (a - b).abs().max().item<float>();

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void EqualsTheTokenLoopAndIsBatchInvariant(bool skewed)
    {
        using var layer = DecodeLayer();
        if (skewed)   // every token on the same three experts: 9 rows for one expert exercise the 4×4 NT tiles
            using (torch.no_grad()) layer.gate.Bias.copy_(torch.tensor(new float[] { 9, 9, 9, -9, -9, -9, -9, -9 }));
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        torch.manual_seed(3);
        var x = torch.randn(9, 32);
        var (indices, weights) = Route(layer, x);
        var experts = layer.experts.ToList();
        var bank = ExpertBank.For(experts);
        Assert.NotNull(bank);
        var yRef = Dispatch.TokenLoop(x, indices, weights, experts);
        long before = RoutedDecodeKernel.Calls;
        var y = RoutedDecodeKernel.RunKernel(x, indices, weights, bank!);
        Assert.NotNull(y);
        Assert.True(RoutedDecodeKernel.Calls > before);
        Assert.True(MaxDiff(y!, yRef) <= Tol, $"kernel differs from the token loop by {MaxDiff(y!, yRef)}");
        // A token's bits do not depend on the other tokens of the batch (fixed summation order per element).
        for (int t = 0; t < 9; t += 4)
        {
            var alone = RoutedDecodeKernel.RunKernel(x.narrow(0, t, 1).contiguous(), indices.narrow(0, t, 1).contiguous(), weights.narrow(0, t, 1).contiguous(), bank!);
            Assert.True(alone!.eq(y!.narrow(0, t, 1)).all().item<bool>(), $"token {t} alone differs from token {t} in the batch");
        }
    }

    [Fact]
    public void TheDecodePathOfSortedUsesItWhereEnabledAndEqualsTheReference()
    {
        using var layer = DecodeLayer();
        using var noGrad = torch.no_grad();
        torch.manual_seed(4);
        using var x = torch.randn(2, 1, 32);                   // a decode step: batch 2 × 1 token
        layer.DispatchPath = MoeDispatch.TokenLoop;
        using var yRef = layer.forward(x);
        layer.DispatchPath = MoeDispatch.Sorted;
        long before = RoutedDecodeKernel.Calls;
        using var y = layer.forward(x);
        Assert.True(MaxDiff(y, yRef) <= Tol, $"Sorted decode differs by {MaxDiff(y, yRef)}");
        // Enabled only with AVX-512 (and not WHALETECH_SMALL_GEMM=0); Calls counts this process, so only "used" is checked.
        if (SmallGemm.Enabled) Assert.True(RoutedDecodeKernel.Calls > before, "the decode step did not use the kernel");
    }

    [Fact]
    public void DeclinesWhatItDoesNotHandleAndRejectsAnExpertOutOfRange()
    {
        using var layer = DecodeLayer();
        using var scope = torch.NewDisposeScope();
        var x = torch.randn(3, 32);
        Tensor indices, weights;
        ExpertBank bank;
        using (torch.no_grad())
        {
            (indices, weights) = Route(layer, x);
            bank = ExpertBank.For(layer.experts.ToList())!;
        }
        // Autograd on a tensor that needs it, other dtypes, strided inputs: null, and the caller runs libtorch.
        var xg = x.detach().requires_grad_(true);
        Assert.Null(RoutedDecodeKernel.RunKernel(xg, indices, weights.detach(), bank));
        using (torch.no_grad())
        {
            Assert.Null(RoutedDecodeKernel.RunKernel(x.to_type(ScalarType.Float64), indices, weights, bank));
            Assert.Null(RoutedDecodeKernel.RunKernel(x, indices.to_type(ScalarType.Int32), weights, bank));
            Assert.Null(RoutedDecodeKernel.RunKernel(x.t().contiguous().t(), indices, weights, bank));
            var bad = indices.clone(); bad[0, 0] = torch.tensor(8L);
            var e = Assert.Throws<WhaleArgumentException>(() => RoutedDecodeKernel.RunKernel(x, bad, weights, bank));
            Assert.Contains("indices", e.Message);
        }
        // An expert width that is not a multiple of 16 (the NT kernel's K): no bank pass.
        using var narrow = Layer(Config(experts: 8, topK: 3, groups: 4, topkGroup: 2, hidden: 32));   // F = 12
        using (torch.no_grad())
        {
            var (i2, w2) = Route(narrow, x);
            var bank2 = ExpertBank.For(narrow.experts.ToList())!;
            Assert.Null(RoutedDecodeKernel.RunKernel(x, i2, w2, bank2));
        }
    }

    [Fact]
    public void TheFusedGatingEqualsSiluTimesUpTimesTheWeightAndSortedInferenceEqualsTheTokenLoop()
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        torch.manual_seed(5);
        var gu = torch.randn(37, 32) * 3;                        // [c, 2F], F = 16
        var w = torch.rand(37, 1);
        var expected = nn.functional.silu(gu.narrow(1, 0, 16)) * gu.narrow(1, 16, 16) * w;
        var h = RoutedDecodeKernel.GatedHiddenKernel(gu, w, 16);
        Assert.NotNull(h);
        // silu(v)·u·w: three float32 roundings and an exp within 2 ulps: a few 1e-7 relative at |values| ≲ 30.
        Assert.True(MaxDiff(h!, expected) <= 1e-5, $"fused gating differs by {MaxDiff(h!, expected)}");
        Assert.Null(RoutedDecodeKernel.GatedHiddenKernel(gu, w, 12));                      // F not a multiple of 16
        Assert.Null(RoutedDecodeKernel.GatedHiddenKernel(gu.t().contiguous().t(), w, 16)); // strided
        // Sorted inference above decode size (the per-expert bank GEMMs, fused gating where enabled) = the token loop.
        using var layer = DecodeLayer();
        var x = torch.randn(300, 32);
        layer.DispatchPath = MoeDispatch.TokenLoop;
        var yRef = layer.forward(x);
        layer.DispatchPath = MoeDispatch.Sorted;
        var y = layer.forward(x);
        Assert.True(MaxDiff(y, yRef) <= 1e-5, $"Sorted inference differs by {MaxDiff(y, yRef)}");
    }
}
