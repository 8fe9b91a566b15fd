// Core/PackedGemm: the blocked AVX-512 GEMM agrees with a float64 reference within the fp32 dot-product error bound on
// every layout the MoE chain hands it (row-major, transposed views, strided rows, edges of the 8 × 32 tile, K past one
// 256-deep slice), writes into and accumulates onto a given output, gives the same bits on one and two threads, and
// declines (null → libtorch) what it does not cover.
using TorchSharp;
using WhaleTech.Core;
using static TorchSharp.torch;

namespace WhaleTech.Tests.Core;

public class PackedGemmTests
{
    static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();

    /// <summary>|fl(Σ a·b) − Σ a·b| ≤ γ_K Σ|a||b|, γ_K = K·u / (1 − K·u), u = 2⁻²⁴ (Higham, Thm 3.1), elementwise against
    /// float64 products of the same fp32 inputs.</summary>
    static void AssertWithinDotBound(Tensor ours, Tensor a, Tensor b, long K, string what, Tensor? c0 = null)
    {
        var a64 = a.to_type(ScalarType.Float64); var b64 = b.to_type(ScalarType.Float64);
        var exact = a64.mm(b64); var abs = a64.abs().mm(b64.abs());
        if (c0 is not null) { exact += c0.to_type(ScalarType.Float64); abs += c0.abs().to_type(ScalarType.Float64); K += 1; }
        double u = Math.Pow(2, -24), gamma = K * u / (1 - K * u);
        var excess = ((ours.to_type(ScalarType.Float64) - exact).abs() - abs * gamma).max().item<double>();
        Assert.True(excess <= 0, $"{what}: error exceeds γ_K·Σ|a||b| by {excess:E2}");
    }

    [Theory]
    [InlineData(8, 32, 16)]       // one full tile
    [InlineData(384, 256, 512)]   // the experts' forward gate-up product at 4,096 tokens, top-6 of 64
    [InlineData(13, 45, 300)]     // edges in both dimensions, K past one slice
    [InlineData(130, 33, 7)]      // more rows than one 128-row block, a 1-column edge strip
    [InlineData(1, 1, 1)]
    public void MatchesFloat64OnEveryLayoutWithinTheDotProductBound(int M, int N, int K)
    {
        using var scope = NewDisposeScope();
        var g = new torch.Generator((ulong)(M * 7919 + N * 31 + K));
        var a = torch.randn(M, K, generator: g); var b = torch.randn(K, N, generator: g);
        var layouts = new (string Name, Tensor A, Tensor B)[]
        {
            ("row-major", a, b),
            ("A transposed view", a.t().contiguous().t(), b),
            ("B transposed view (x·Wᵀ)", a, b.t().contiguous().t()),
            ("both transposed", a.t().contiguous().t(), b.t().contiguous().t()),
            ("strided rows (narrow of a wider matrix)", torch.randn(M, K + 5, generator: g).narrow(1, 2, K), torch.randn(K, N + 3, generator: g).narrow(1, 1, N)),
        };
        foreach (var (name, la, lb) in layouts)
        {
            var c = PackedGemm.MmKernel(la, lb);
            Assert.NotNull(c);
            Assert.Equal(new long[] { M, N }, c!.shape);
            AssertWithinDotBound(c, la, lb, K, $"{name} {M}×{N}×{K}");
        }
    }

    [Fact]
    public void WritesIntoAStridedOutputAndAccumulatesOntoIt()
    {
        using var scope = NewDisposeScope();
        var g = new torch.Generator(11);
        var a = torch.randn(20, 270, generator: g); var b = torch.randn(270, 40, generator: g);
        var wide = torch.randn(20, 64, generator: g);
        var into = wide.narrow(1, 8, 40);                                     // row stride 64
        var before = wide.clone();
        Assert.Same(into, PackedGemm.MmKernel(a, b, into));
        AssertWithinDotBound(into, a, b, 270, "into");
        Assert.True(Same(wide.narrow(1, 0, 8), before.narrow(1, 0, 8)) && Same(wide.narrow(1, 48, 16), before.narrow(1, 48, 16)),
                    "columns outside the view must stay untouched");
        var c0 = torch.randn(20, 40, generator: g); var acc = c0.clone();
        PackedGemm.MmKernel(a, b, acc, accumulate: true);
        AssertWithinDotBound(acc, a, b, 270, "accumulate", c0);
    }

    [Fact]
    public void BitsDoNotDependOnTheThreadCount()
    {
        using var scope = NewDisposeScope();
        var g = new torch.Generator(5);
        var a = torch.randn(300, 200, generator: g); var b = torch.randn(200, 96, generator: g);
        try
        {
            SmallGemm.ThreadsOverride = 1;
            var one = PackedGemm.MmKernel(a, b)!;
            SmallGemm.ThreadsOverride = 2;
            var two = PackedGemm.MmKernel(a, b)!;
            Assert.True(Same(one, two));
        }
        finally { SmallGemm.ThreadsOverride = 0; }
    }

    [Fact]
    public void DeclinesWhatItDoesNotCover()
    {
        using var scope = NewDisposeScope();
        var a = torch.randn(4, 8); var b = torch.randn(8, 3);
        Assert.Null(PackedGemm.MmKernel(a.to_type(ScalarType.Float64), b.to_type(ScalarType.Float64)));   // float64
        Assert.Null(PackedGemm.MmKernel(a.view(1, 4, 8), b));                                            // 3-D
        Assert.Null(PackedGemm.MmKernel(a, torch.randn(7, 3)));                                          // K mismatch
        Assert.Null(PackedGemm.MmKernel(a, b, torch.empty(4, 4)));                                       // wrong output shape
        using (var _ = torch.enable_grad())
            Assert.Null(PackedGemm.MmKernel(a.requires_grad_(true), b));                                 // autograd needs the input
        var empty = PackedGemm.MmKernel(torch.randn(4, 0), torch.randn(0, 3));                           // K = 0: zeros
        Assert.True(empty!.eq(0).all().item<bool>());
    }
}
