using TorchSharp;
using WhaleTech.Core;
using WhaleTech.Moe;
using static TorchSharp.torch;
using static WhaleTech.Tests.Moe.MoeTestUtil;

namespace WhaleTech.Tests.Moe;

/// <summary>The training node of the routed experts (RoutedExpertsFunction: one autograd node, hand-written backward)
/// against autograd through the token loop, and its SwiGLU rows against libtorch's autograd in float64. The node runs
/// here on any CPU (ApplyKernel skips the AVX-512 switch; .NET emulates Vector512 where it is absent).</summary>
public class RoutedExpertsFunctionTests
{
    // Outputs and gradients are sums of K = 3 expert terms, each float32 products of length D = 32 and F ≤ 32 with
    // |terms| ~ 1: reordered float32 sums differ by a few ulps of ~1 (≈ 1e-7) and the C# exp from libtorch's by an
    // ulp, so 1e-5 leaves two orders of magnitude of room.
    const double Tol = 1e-5;

    /// <summary>Dispatch.Sorted's plan: the pairs sorted by expert (stable, tokens ascending), their tokens, the counts.</summary>
    static (Tensor Order, Tensor Token, long[] Counts) Plan(Tensor indices, int experts)
    {
        var flat = indices.reshape(-1);
        var order = flat.sort(0, false, true).Indices;
        return (order, order.div(indices.shape[1], rounding_mode: RoundingMode.floor), Dispatch.Counts(indices, experts));
    }

    /// <summary>y, ∂x, ∂(combine weights) and every expert weight's gradient, through the node or the token loop.</summary>
    static (Tensor Y, Tensor Dx, Tensor Dw, Dictionary<string, Tensor?> Dp) Run(DeepSeekMoE layer, Tensor x0, Tensor r, bool node)
    {
        layer.zero_grad();
        var experts = layer.experts.ToList();
        var x = x0.detach().clone().requires_grad_(true);
        Tensor indices, w0;
        using (torch.no_grad()) { var routing = layer.gate.Route(x0); indices = routing.Indices.detach(); w0 = routing.Weights.detach(); }
        var w = w0.clone().requires_grad_(true);
        Tensor y;
        if (node)
        {
            var (order, token, counts) = Plan(indices, experts.Count);
            var ws = w.reshape(-1).index_select(0, order).unsqueeze(-1);            // [P, 1], differentiable
            long before = RoutedExpertsFunction.Calls;
            y = RoutedExpertsFunction.ApplyKernel(x, token, counts, ws, experts) ?? throw new InvalidOperationException("the node declined");
            Assert.True(RoutedExpertsFunction.Calls > before);
        }
        else y = Dispatch.TokenLoop(x, indices, w, experts);
        (y * r).sum().backward();
        var dp = layer.experts.named_parameters().ToDictionary(p => p.name, p => p.parameter.grad?.clone());
        return (y.detach(), x.grad!.clone(), w.grad!.clone(), dp);
    }

    [Theory]
    [InlineData(12, false)]   // F = 12: every row through the padded last lanes
    [InlineData(32, false)]   // F = 32: two full 16-lane steps
    [InlineData(20, true)]    // F = 20: one full step and a tail; most experts idle
    public void OutputsAndEveryGradientEqualAutogradThroughTheTokenLoop(int width, bool skewed)
    {
        using var scope = torch.NewDisposeScope();
        using var layer = Layer(Config(experts: 8, topK: 3, groups: 4, topkGroup: 2, hidden: 32) with { MoeIntermediateSize = width });
        if (skewed)
            using (torch.no_grad()) layer.gate.Bias.copy_(torch.tensor(new float[] { 9, 9, -9, -9, 9, -9, -9, -9 }));
        torch.manual_seed(11);
        var x = torch.randn(13, 32);
        var r = torch.randn(13, 32);
        var (yRef, dxRef, dwRef, dpRef) = Run(layer, x, r, node: false);
        var (y, dx, dw, dp) = Run(layer, x, r, node: true);
        Assert.True(MaxAbsDiff(y, yRef) <= Tol, $"output differs by {MaxAbsDiff(y, yRef)}");
        Assert.True(MaxAbsDiff(dx, dxRef) <= Tol, $"∂x differs by {MaxAbsDiff(dx, dxRef)}");
        Assert.True(MaxAbsDiff(dw, dwRef) <= Tol, $"∂(combine weights) differs by {MaxAbsDiff(dw, dwRef)}");
        foreach (var (name, g) in dpRef)
        {
            if (g is null) { Assert.Null(dp[name]); continue; }          // an idle expert gets no gradient on either path
            Assert.True(MaxAbsDiff(dp[name]!, g) <= Tol, $"grad of {name} differs by {MaxAbsDiff(dp[name]!, g)}");
        }
        if (skewed) Assert.Contains(dpRef.Values, g => g is null);
    }

    [Fact]
    public void GradientsAccumulateOverBackwardsAndFrozenExpertsGetNone()
    {
        using var scope = torch.NewDisposeScope();
        using var layer = Layer(Config(experts: 8, topK: 3, groups: 4, topkGroup: 2, hidden: 32) with { MoeIntermediateSize = 16 });
        var experts = layer.experts.ToList();
        torch.manual_seed(12);
        var x = torch.randn(10, 32);
        Tensor indices, w;
        using (torch.no_grad()) { var routing = layer.gate.Route(x); indices = routing.Indices.detach(); w = routing.Weights.detach(); }
        var (order, token, counts) = Plan(indices, experts.Count);
        var ws = w.reshape(-1).index_select(0, order).unsqueeze(-1).contiguous();
        Tensor Step() { var y = RoutedExpertsFunction.ApplyKernel(x, token, counts, ws, experts)!; y.sum().backward(); return y; }
        layer.zero_grad();
        Step();
        var once = experts[(int)indices[0, 0].item<long>()].down_proj.get_parameter("weight")!.grad!.clone();
        Step();                                                               // a second micro-batch adds to .grad
        var twice = experts[(int)indices[0, 0].item<long>()].down_proj.get_parameter("weight")!.grad!;
        Assert.True(MaxAbsDiff(twice, once * 2) <= Tol, $"accumulated grad differs from twice one by {MaxAbsDiff(twice, once * 2)}");

        layer.zero_grad();
        foreach (var p in layer.experts.parameters()) p.requires_grad_(false);   // frozen experts, trainable input
        var xg = x.detach().clone().requires_grad_(true);
        RoutedExpertsFunction.ApplyKernel(xg, token, counts, ws, experts)!.sum().backward();
        Assert.NotNull(xg.grad);
        Assert.All(layer.experts.parameters(), p => Assert.Null(p.grad));
    }

    [Fact]
    public void DeclinesOtherDtypesDevicesAndCustomLinears()
    {
        using var scope = torch.NewDisposeScope();
        using var layer = Layer(Config(experts: 8, topK: 3, groups: 4, topkGroup: 2, hidden: 32) with { MoeIntermediateSize = 16 });
        var experts = layer.experts.ToList();
        var x = torch.randn(4, 32);
        Tensor indices, w;
        using (torch.no_grad()) { var routing = layer.gate.Route(x); indices = routing.Indices.detach(); w = routing.Weights.detach(); }
        var (order, token, counts) = Plan(indices, experts.Count);
        var ws = w.reshape(-1).index_select(0, order).unsqueeze(-1).contiguous();
        Assert.Null(RoutedExpertsFunction.ApplyKernel(x.to_type(ScalarType.Float64), token, counts, ws, experts));
        Assert.Null(RoutedExpertsFunction.ApplyKernel(x, token, counts, ws.to_type(ScalarType.Float64), experts));
        Assert.Null(RoutedExpertsFunction.ApplyKernel(x, token, counts[..^1], ws, experts));      // counts for another layer
        // FP8-simulated experts own their forward: no stacked bank, no node (Sorted keeps the autograd path).
        torch.manual_seed(1);
        var cfg = Config(experts: 8, topK: 3, groups: 4, topkGroup: 2, hidden: 32) with { MoeIntermediateSize = 16 };
        using var fp8 = new DeepSeekMoE(cfg.Validate(), "model.layers.1.mlp", WhaleTech.Fp8.Fp8Linears.Factory(WhaleTech.Fp8.Fp8Recipe.DeepSeekV3));
        Assert.Null(RoutedExpertsFunction.ApplyKernel(x, token, counts, ws, fp8.experts.ToList()));
    }

    [Fact]
    public void SwiGluRowsEqualAutogradOfTheFormulaInFloat64()
    {
        using var scope = torch.NewDisposeScope();
        torch.manual_seed(13);
        const int F = 21;                                                    // a full 16-lane step and a 5-lane tail
        var gu = torch.randn(6, 2 * F) * 4;
        gu[0, 0] = torch.tensor(-90f); gu[0, 1] = torch.tensor(90f); gu[0, 2] = torch.tensor(0f);   // saturating silu
        var dh = torch.randn(6, F);
        var w = torch.rand(6);
        // Reference: w · silu(g) · u and its gradients by libtorch autograd, in float64.
        var g64 = gu.narrow(1, 0, F).to_type(ScalarType.Float64).requires_grad_(true);
        var u64 = gu.narrow(1, F, F).to_type(ScalarType.Float64).requires_grad_(true);
        var w64 = w.to_type(ScalarType.Float64).unsqueeze(1).requires_grad_(true);
        var h64 = w64 * nn.functional.silu(g64) * u64;
        (h64 * dh.to_type(ScalarType.Float64)).sum().backward();
        var h = ExpertChain.WeightedHidden(gu, w, F);              // SwiGluRows.Forward per row
        var dw = torch.empty(6);
        var (dgu, hAgain) = ExpertChain.SwiGluBackward(gu, w, dh, dw, F);   // SwiGluRows.Backward per row
        // Each value is a product of a few float32 roundings of O(1..100) numbers: relative 1e-5 of the largest.
        double Rel(Tensor a, Tensor b) => MaxAbsDiff(a.to_type(ScalarType.Float64), b) / b.abs().max().item<double>();
        Assert.True(Rel(h, h64.detach()) <= Tol, $"forward differs by {Rel(h, h64.detach())}");
        Assert.True(hAgain.eq(h).all().item<bool>(), "the backward's recomputed hidden is not the forward's bits");
        Assert.True(Rel(dgu.narrow(1, 0, F), g64.grad!) <= Tol, $"∂g differs by {Rel(dgu.narrow(1, 0, F), g64.grad!)}");
        Assert.True(Rel(dgu.narrow(1, F, F), u64.grad!) <= Tol, $"∂u differs by {Rel(dgu.narrow(1, F, F), u64.grad!)}");
        Assert.True(Rel(dw, w64.grad!.squeeze(1)) <= Tol, $"∂w differs by {Rel(dw, w64.grad!.squeeze(1))}");
    }

    [Fact]
    public void SortedTrainingUsesTheNodeWhereEnabled()
    {
        using var scope = torch.NewDisposeScope();
        using var layer = Layer(Config(experts: 8, topK: 3, groups: 4, topkGroup: 2, hidden: 32) with { MoeIntermediateSize = 16 });
        layer.DispatchPath = MoeDispatch.Sorted;
        var x = torch.randn(2, 5, 32).requires_grad_(true);
        long before = RoutedExpertsFunction.Calls;
        layer.forward(x).sum().backward();
        // Enabled only with AVX-512 (and not WHALETECH_SMALL_GEMM=0); Calls counts this process, so only "used" is checked.
        if (SmallGemm.Enabled) Assert.True(RoutedExpertsFunction.Calls > before, "Sorted training did not use the node");
        Assert.NotNull(x.grad);
    }
}
