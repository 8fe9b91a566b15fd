using TorchSharp;
using WhaleTech.Core;
using WhaleTech.Moe;
using static TorchSharp.torch;
using static WhaleTech.Tests.Moe.MoeTestUtil;

namespace WhaleTech.Tests.Moe;

/// <summary>The shared experts' training node (SharedExpertFunction) against autograd through the module.</summary>
public class SharedExpertFunctionTests
{
    // One SwiGLU of width Ns·F ≤ 40 over D = 32 with |terms| ~ 1: float32 reassociation and the C# exp stay ~1e-7.
    const double Tol = 1e-5;

    [Theory]
    [InlineData(1, 16)]   // width 16: one full 16-lane step
    [InlineData(2, 20)]   // width 40: two steps and an 8-lane tail
    public void OutputAndGradientsEqualAutogradThroughTheModule(int shared, int width)
    {
        using var scope = torch.NewDisposeScope();
        using var layer = Layer(Config(experts: 4, topK: 2, groups: 1, topkGroup: 1, hidden: 32, shared: shared) with { MoeIntermediateSize = width });
        var expert = layer.shared_experts!;
        torch.manual_seed(21);
        var x0 = torch.randn(9, 32);
        var r = torch.randn(9, 32);
        (Tensor Y, Tensor Dx, Tensor[] Dp) Run(bool node)
        {
            expert.zero_grad();
            var x = x0.clone().requires_grad_(true);
            long before = SharedExpertFunction.Calls;
            var y = node ? SharedExpertFunction.ApplyKernel(x, expert)! : expert.forward(x);
            if (node) Assert.True(SharedExpertFunction.Calls > before);
            (y * r).sum().backward();
            return (y.detach(), x.grad!.clone(), expert.parameters().Select(p => p.grad!.clone()).ToArray());
        }
        var (yRef, dxRef, dpRef) = Run(node: false);
        var (y, dx, dp) = Run(node: true);
        Assert.True(MaxAbsDiff(y, yRef) <= Tol, $"output differs by {MaxAbsDiff(y, yRef)}");
        Assert.True(MaxAbsDiff(dx, dxRef) <= Tol, $"∂x differs by {MaxAbsDiff(dx, dxRef)}");
        Assert.Equal(3, dp.Length);
        for (int i = 0; i < 3; i++) Assert.True(MaxAbsDiff(dp[i], dpRef[i]) <= Tol, $"grad {i} differs by {MaxAbsDiff(dp[i], dpRef[i])}");
    }

    [Fact]
    public void DeclinesOtherDtypesAndCustomLinearsAndTheLayerUsesItWhereEnabled()
    {
        using var scope = torch.NewDisposeScope();
        using var layer = Layer(Config(experts: 4, topK: 2, groups: 1, topkGroup: 1, hidden: 32) with { MoeIntermediateSize = 16 });
        var x = torch.randn(3, 32);
        Assert.Null(SharedExpertFunction.ApplyKernel(x.to_type(ScalarType.Float64), layer.shared_experts!));
        Assert.Null(SharedExpertFunction.ApplyKernel(torch.randn(3, 16), layer.shared_experts!));      // wrong hidden size
        torch.manual_seed(1);
        var cfg = Config(experts: 4, topK: 2, groups: 1, topkGroup: 1, hidden: 32) with { MoeIntermediateSize = 16 };
        using var fp8 = new DeepSeekMoE(cfg.Validate(), "model.layers.1.mlp", WhaleTech.Fp8.Fp8Linears.Factory(WhaleTech.Fp8.Fp8Recipe.DeepSeekV3));
        Assert.Null(SharedExpertFunction.ApplyKernel(x, fp8.shared_experts!));
        using (torch.no_grad()) Assert.Null(SharedExpertFunction.Apply(x, layer.shared_experts!));   // inference keeps the module
        long before = SharedExpertFunction.Calls;
        layer.forward(x.requires_grad_(true)).sum().backward();
        if (SmallGemm.Enabled) Assert.True(SharedExpertFunction.Calls > before, "training did not use the node");
    }
}
