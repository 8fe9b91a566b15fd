using TorchSharp;
using WhaleTech.Moe;
using static TorchSharp.torch;
using static WhaleTech.Tests.Moe.MoeTestUtil;

namespace WhaleTech.Tests.Moe;

/// <summary>The grouped expert products of PaddedBmm and GroupedMm on the CPU (GroupedGemmFunction) against libtorch's
/// mm group by group, forward and backward.</summary>
public class GroupedGemmFunctionTests
{
    // K ≤ 48 products of |terms| ~ 1: float32 reassociation stays ~1e-6.
    const double Tol = 1e-4;

    [Fact]
    public void OutputAndGradientsEqualAutogradOfThePerGroupProducts()
    {
        using var scope = torch.NewDisposeScope();
        torch.manual_seed(3);
        long[] counts = [5, 0, 17, 1];                                        // an empty group and a 1-row group
        var a0 = torch.randn(counts.Sum(), 48);
        var stack = torch.randn(4, 40, 48);                                   // [G, N, K]: b = stackᵀ, a transposed view
        var r = torch.randn(counts.Sum(), 40);
        (Tensor Y, Tensor Da, Tensor Db) Run(bool node)
        {
            var a = a0.clone().requires_grad_(true);
            var w = stack.clone().requires_grad_(true);
            var b = w.transpose(1, 2);                                        // [G, K, N]
            long before = GroupedGemmFunction.Calls;
            Tensor y;
            if (node) { y = GroupedGemmFunction.ApplyKernel(a, b, counts)!; Assert.True(GroupedGemmFunction.Calls > before); }
            else
            {
                var parts = new List<Tensor>(); long row = 0;
                for (int g = 0; g < counts.Length; g++) { parts.Add(a.narrow(0, row, counts[g]).mm(b[g])); row += counts[g]; }
                y = torch.cat(parts, 0);
            }
            (y * r).sum().backward();
            return (y.detach(), a.grad!.clone(), w.grad!.clone());
        }
        var (yRef, daRef, dbRef) = Run(node: false);
        var (y, da, db) = Run(node: true);
        Assert.True(MaxAbsDiff(y, yRef) <= Tol, $"output differs by {MaxAbsDiff(y, yRef)}");
        Assert.True(MaxAbsDiff(da, daRef) <= Tol, $"∂a differs by {MaxAbsDiff(da, daRef)}");
        Assert.True(MaxAbsDiff(db, dbRef) <= Tol, $"∂b differs by {MaxAbsDiff(db, dbRef)}");
        Assert.True(db[1].eq(0).all().item<bool>(), "the empty group's weight gets a zero gradient");
    }

    [Fact]
    public void BmmMatchesLibtorchAndDeclinesWhatItDoesNotCover()
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        torch.manual_seed(4);
        var a = torch.randn(3, 7, 32); var b = torch.randn(3, 32, 20);
        if (GroupedGemmFunction.Bmm(a, b) is { } y)                          // null where AVX-512 is absent
            Assert.True(MaxAbsDiff(y, a.bmm(b)) <= Tol);
        Assert.Null(GroupedGemmFunction.ApplyKernel(a.view(21, 32).to_type(ScalarType.Float64), b.to_type(ScalarType.Float64), [7, 7, 7]));
        Assert.Null(GroupedGemmFunction.ApplyKernel(a.view(21, 32), b, [7, 7, 6]));   // counts do not sum to the rows
        Assert.Null(GroupedGemmFunction.ApplyKernel(a.view(21, 32), b, [7, 14]));     // one count per group
    }
}
