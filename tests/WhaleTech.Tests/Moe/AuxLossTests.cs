using TorchSharp;
using WhaleTech.Moe;
using static TorchSharp.torch;
using static WhaleTech.Tests.Moe.MoeTestUtil;

namespace WhaleTech.Tests.Moe;

public class AuxLossTests
{
    [Fact]
    public void SwitchAndGShardEqualOneForUniformRoutingAndScores()
    {
        using var scores = torch.full(8, 4, 0.25f);                       // [N=8, E=4] uniform
        using var idx = torch.tensor(new long[] { 0, 1, 2, 3, 0, 1, 2, 3 }).view(8, 1);
        Assert.Equal(1.0, AuxLoss.Switch(scores, idx, 4, 1).item<float>(), 5);
        Assert.Equal(1.0, AuxLoss.GShard(scores, idx, 4).item<float>(), 5);
        // all tokens to expert 0 with score mass on it: E · 1 · P_0
        using var skew = torch.tensor(new float[] { 0.7f, 0.1f, 0.1f, 0.1f }).expand(8, 4).contiguous();
        using var zero = torch.zeros(8, 1, dtype: ScalarType.Int64);
        Assert.Equal(4 * 0.7, AuxLoss.Switch(skew, zero, 4, 1).item<float>(), 5);
    }

    [Fact]
    public void SequenceWiseLossMatchesDeepSeekV3Formula()
    {
        // one sequence of T=2 tokens, E=3, K=1: top-1 experts 0 and 2 → f = 3/(1·2)·[1,0,1]
        using var s = torch.tensor(new float[] { 0.6f, 0.2f, 0.2f, 0.1f, 0.3f, 0.6f }).view(2, 3);
        // P = mean of normalized scores = [(0.6+0.1)/2, (0.2+0.3)/2, (0.2+0.6)/2]
        double expected = 1.5 * (0.35 + 0.4);
        Assert.Equal(expected, AuxLoss.SequenceWise(s, 1, 1).item<float>(), 5);
        // two identical sequences average to the same
        Assert.Equal(expected, AuxLoss.SequenceWise(torch.cat([s, s], 0), 2, 1).item<float>(), 5);
    }

    [Theory]
    [InlineData(AuxLossKind.Switch, 1e-2, 0.0)]
    [InlineData(AuxLossKind.GShard, 1e-2, 0.0)]
    [InlineData(AuxLossKind.SequenceWise, 1e-4, 0.0)]
    [InlineData(AuxLossKind.None, 0.0, 1e-3)]
    public void LayerExposesAuxLossInTrainingOnlyAndItReachesTheRouter(AuxLossKind kind, double alpha, double z)
    {
        using var layer = Layer();
        layer.AuxLossOptions = new AuxLossOptions(kind, alpha, z);
        layer.train();
        using var y = layer.forward(torch.randn(2, 6, 16));
        var aux = MoeLayers.TakeAuxLoss(MoeLayers.Find(layer));
        Assert.NotNull(aux);
        Assert.True(aux!.item<float>() > 0);
        aux.backward();
        Assert.True(layer.gate.weight.grad!.abs().sum().item<float>() > 0);
        Assert.Null(layer.TakeAuxLoss());                                     // taken once
        layer.eval();
        using var y2 = layer.forward(torch.randn(2, 6, 16));
        Assert.Null(MoeLayers.TakeAuxLoss([layer]));
    }
}
