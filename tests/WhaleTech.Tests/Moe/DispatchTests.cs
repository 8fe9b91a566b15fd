using TorchSharp;
using WhaleTech.Moe;
using static TorchSharp.torch;
using static WhaleTech.Tests.Moe.MoeTestUtil;
using WhaleTech.Lab.Moe;

namespace WhaleTech.Tests.Moe;

public class DispatchTests
{
    // Every path sums the same fp32 products in a different order; at these magnitudes (|y| ~ 1) the
    // float32 rounding of a reordered sum of a few terms stays far below 1e-5.
    const double Tol = 1e-5;

    [Theory]
    [InlineData(MoeDispatch.ExpertLoop, false)]
    [InlineData(MoeDispatch.Sorted, false)]
    [InlineData(MoeDispatch.PaddedBmm, false)]
    [InlineData(MoeDispatch.Sorted, true)]
    [InlineData(MoeDispatch.PaddedBmm, true)]
    [InlineData(MoeDispatch.GroupedMm, false)]
    [InlineData(MoeDispatch.GroupedMm, true)]
    [InlineData(MoeDispatch.PaddedBmm, false, true)]
    [InlineData(MoeDispatch.PaddedBmm, true, true)]
    [InlineData(MoeDispatch.GroupedMm, false, true)]
    [InlineData(MoeDispatch.GroupedMm, true, true)]
    public void FastPathsEqualTheTokenLoopInOutputsAndGradients(MoeDispatch path, bool skewed, bool manyGroups = false)
    {
        // manyGroups: buffers of at most 8 rows (8 × 2F × 4 B = 768 B), so the 8 experts run in several consecutive
        // groups (Dispatch.ChunkBytes); when skewed, the overloaded expert exceeds the limit and forms a group alone.
        Dispatch._chunkBytesOnThisThread = manyGroups ? 768 : null;
        try { CheckAgainstTokenLoop(path, skewed); }
        finally { Dispatch._chunkBytesOnThisThread = null; }
    }

    static void CheckAgainstTokenLoop(MoeDispatch path, bool skewed)
    {
        using var layer = Layer(Config(experts: 8, topK: 3, groups: 4, topkGroup: 2));
        if (skewed)   // most experts idle, one overloaded: exercises empty slices and a large capacity
            using (torch.no_grad()) layer.gate.Bias.copy_(torch.tensor(new float[] { 3, 0, -5, -5, 2, -5, -5, 1 }));
        torch.manual_seed(7);
        using var x0 = torch.randn(3, 7, 16);
        using var r = torch.randn(3, 7, 16);

        var (yRef, gradsRef) = Run(layer, MoeDispatch.TokenLoop, x0, r);
        var (y, grads) = Run(layer, path, x0, r);

        Assert.True(MaxDiff(y, yRef) <= Tol, $"output differs by {MaxDiff(y, yRef)}");
        Assert.Contains("x", gradsRef.Keys);
        Assert.Contains("gate.weight", gradsRef.Keys);
        Assert.Contains("experts.0.down_proj.weight", gradsRef.Keys);
        // An idle expert has no gradient on one path and a zero gradient on another (PaddedBmm): same thing.
        foreach (var name in gradsRef.Keys.Union(grads.Keys))
        {
            var a = grads.GetValueOrDefault(name) ?? torch.zeros_like(gradsRef[name]);
            var b = gradsRef.GetValueOrDefault(name) ?? torch.zeros_like(grads[name]);
            Assert.True(MaxDiff(a, b) <= Tol, $"grad of {name} differs by {MaxDiff(a, b)}");
        }
    }

    [Theory]
    [InlineData(MoeDispatch.Sorted)]
    [InlineData(MoeDispatch.PaddedBmm)]
    [InlineData(MoeDispatch.GroupedMm)]
    [InlineData(MoeDispatch.ExpertLoop)]
    public void InferenceReadsTheStackedWeightsAndFollowsInPlaceUpdatesLoadAndSave(MoeDispatch path)
    {
        using var layer = Layer(Config(experts: 8, topK: 3, groups: 4, topkGroup: 2));
        torch.manual_seed(7);
        using var x = torch.randn(21, 16);
        var names = layer.named_parameters().Select(p => p.name).ToList();
        var objects = layer.parameters().ToList();
        Tensor Eval(MoeDispatch p) { layer.DispatchPath = p; using var _ = torch.no_grad(); return layer.forward(x); }
        using var yRef = Eval(MoeDispatch.TokenLoop);
        using var y = Eval(path);                                  // the first no-grad call stacks (ties) the experts
        Assert.True(MaxDiff(y, yRef) <= Tol, $"no-grad output differs by {MaxDiff(y, yRef)}");
        // Same Parameter objects under the same names: optimizers and state dicts see nothing new.
        Assert.Equal(names, layer.named_parameters().Select(p => p.name).ToList());
        Assert.True(objects.Zip(layer.parameters()).All(t => ReferenceEquals(t.First, t.Second)));
        // An optimizer-style in-place update reaches the stacked copy.
        using (torch.no_grad()) foreach (var p in layer.parameters()) p.mul_(1.5);
        using var yRef2 = Eval(MoeDispatch.TokenLoop);
        using var y2 = Eval(path);
        Assert.True(MaxDiff(y2, yRef2) <= Tol && MaxDiff(y2, y) > 1e-3, $"after the update: {MaxDiff(y2, yRef2)} vs the reference");
        // Load (in-place copy_) and save round-trip through the tied parameters.
        var dir = Directory.CreateTempSubdirectory("whale-bank-").FullName;
        try
        {
            string file = Path.Combine(dir, "m.safetensors");
            WhaleTech.IO.StateDict.Save(layer, file);
            using var other = Layer(Config(experts: 8, topK: 3, groups: 4, topkGroup: 2), seed: 5);
            other.DispatchPath = path;
            using (var _ = torch.no_grad()) other.forward(x).Dispose();   // tie the other layer's bank first
            WhaleTech.IO.StateDict.Load(other, file);
            using var _2 = torch.no_grad();
            using var y3 = other.forward(x);
            Assert.True(MaxDiff(y3, y2) <= Tol, $"loaded layer differs by {MaxDiff(y3, y2)}");
        }
        finally { Directory.Delete(dir, true); }
        // Training after inference still sends every expert its own gradient.
        using var x0 = torch.randn(1, 21, 16);
        using var r = torch.randn(1, 21, 16);
        var (_, gradsRef) = Run(layer, MoeDispatch.TokenLoop, x0, r);
        var (_, grads) = Run(layer, path, x0, r);
        foreach (var name in gradsRef.Keys)
            Assert.True(MaxDiff(grads.GetValueOrDefault(name) ?? torch.zeros_like(gradsRef[name]), gradsRef[name]) <= Tol, $"grad of {name}");
    }

    [Theory]
    [InlineData(MoeDispatch.PaddedBmm)]
    [InlineData(MoeDispatch.GroupedMm)]
    public void InferenceInManyExpertGroupsEqualsTheTokenLoop(MoeDispatch path)
    {
        using var layer = Layer(Config(experts: 8, topK: 3, groups: 4, topkGroup: 2));
        torch.manual_seed(7);
        using var x = torch.randn(21, 16);
        using var _ = torch.no_grad();
        layer.DispatchPath = MoeDispatch.TokenLoop;
        using var yRef = layer.forward(x);
        layer.DispatchPath = path;
        Dispatch._chunkBytesOnThisThread = 768;   // ≤ 8 buffer rows per group: several groups over the stacked bank
        try
        {
            using var y = layer.forward(x);
            Assert.True(MaxDiff(y, yRef) <= Tol, $"no-grad output in groups differs by {MaxDiff(y, yRef)}");
        }
        finally { Dispatch._chunkBytesOnThisThread = null; }
        Assert.Throws<WhaleTech.Runtime.WhaleArgumentException>(() => Dispatch.ChunkBytes = 100);
    }

    [Fact]
    public void NoTokenIsDroppedEvenWhenEveryTokenPicksTheSameExperts()
    {
        using var layer = Layer(Config(groups: 1, topkGroup: 1, shared: 0));
        using (torch.no_grad()) layer.gate.Bias.copy_(torch.tensor(new float[] { 9, 9, 0, 0, 0, 0, 0, 0 }));
        layer.DispatchPath = MoeDispatch.PaddedBmm;
        using var x = torch.randn(40, 16);
        using var y = layer.forward(x);
        Assert.Equal(new long[] { 40, 40, 0, 0, 0, 0, 0, 0 }, layer.LastCounts());
        Assert.True(y.abs().sum(-1).min().item<float>() > 0);   // every token got its experts' output
        layer.DispatchPath = MoeDispatch.TokenLoop;
        using var yRef = layer.forward(x);
        Assert.True(MaxDiff(y, yRef) <= Tol);
    }

    [Fact]
    public void GroupedMatmulMultipliesEachRowGroupByItsMatrixAndRejectsBadOffsets()
    {
        using var scope = torch.NewDisposeScope();
        var a = torch.randn(7, 4, generator: new torch.Generator(3));
        var b = torch.randn(3, 4, 8, generator: new torch.Generator(4));
        var offs = GroupedMatmul.Offsets([2, 0, 5], torch.CPU);                   // group 1 empty
        Assert.Equal(new[] { 2, 2, 7 }, offs.data<int>().ToArray());
        var y = GroupedMatmul.Apply(a, b, offs);
        var expected = torch.cat([a[..2].matmul(b[0]), a[2..].matmul(b[2])], 0);
        Assert.True(MaxDiff(y, expected) <= Tol);
        Assert.Throws<WhaleTech.Runtime.WhaleArgumentException>(() => GroupedMatmul.Apply(a, b, offs.to_type(ScalarType.Int64)));
        Assert.Throws<WhaleTech.Runtime.WhaleArgumentException>(() => GroupedMatmul.Apply(a, b[..2], offs));
        Assert.Throws<WhaleTech.Runtime.WhaleArgumentException>(() => GroupedMatmul.Apply(a, torch.randn(3, 4, 5), offs));   // 20-byte rows
    }

    static (Tensor y, Dictionary<string, Tensor> grads) Run(DeepSeekMoE layer, MoeDispatch path, Tensor x0, Tensor r)
    {
        layer.zero_grad();
        layer.DispatchPath = path;
        var x = x0.clone().requires_grad_(true);
        var y = layer.forward(x);
        (y * r).sum().backward();
        var grads = new Dictionary<string, Tensor> { ["x"] = x.grad!.clone() };
        foreach (var (name, p) in layer.named_parameters())
            if (p.grad is { } g) grads[name] = g.clone();
        return (y.detach(), grads);
    }

    static double MaxDiff(Tensor a, Tensor b) => (a - b).abs().max().item<float>();
}

public class MoeBenchmarkTests
{
    [Fact]
    public void CpuBenchmarkReturnsARowPerPathPassAndTokenCount()
    {
        var rows = MoeBenchmark.Run(MoeTestUtil.Config(), [16], [MoeDispatch.Sorted, MoeDispatch.PaddedBmm], torch.CPU,
            warmup: 0, iterations: 1, peakFlops: 1e12, bias: [2, 0, 0, 0, 0, 0, 0, 0]);
        Assert.Equal(1 * (2 + 1) * 2, rows.Count);                        // tokens × (paths + dense) × {fwd, fwd+bwd}
        Assert.All(rows, r => Assert.True(r.Milliseconds > 0 && r.TokensPerSecond > 0 && r.Mfu > 0));
        Assert.All(rows.Where(r => r.Variant == "Sorted"), r => Assert.True(r.MaxVio > 0.5));   // the bias imposes imbalance
    }
}
