using TorchSharp;
using WhaleTech.Moe;
using WhaleTech.Runtime;
using static TorchSharp.torch;
using static WhaleTech.Tests.Moe.MoeTestUtil;

namespace WhaleTech.Tests.Moe;

public class DeepSeekMoETests
{
    [Fact]
    public void NamesMatchHuggingFaceDeepSeekV3()
    {
        using var layer = Layer();
        var parameters = layer.named_parameters().ToDictionary(p => p.name, p => p.parameter.shape);
        var buffers = layer.named_buffers().ToDictionary(b => b.name, b => b.buffer);
        Assert.Equal(new long[] { 8, 16 }, parameters["gate.weight"]);
        Assert.Equal(new long[] { 12, 16 }, parameters["experts.7.gate_proj.weight"]);
        Assert.Equal(new long[] { 12, 16 }, parameters["experts.0.up_proj.weight"]);
        Assert.Equal(new long[] { 16, 12 }, parameters["experts.3.down_proj.weight"]);
        Assert.Equal(new long[] { 12, 16 }, parameters["shared_experts.gate_proj.weight"]);
        Assert.Equal(new long[] { 16, 12 }, parameters["shared_experts.down_proj.weight"]);
        Assert.Equal(1 + 8 * 3 + 3, parameters.Count);
        Assert.Equal(ScalarType.Float32, layer.gate.weight.dtype);
        var bias = Assert.Single(buffers).Value;
        Assert.Equal("gate.e_score_correction_bias", Assert.Single(buffers).Key);
        Assert.Equal(ScalarType.Float32, bias.dtype);
        Assert.Equal(new long[] { 8 }, bias.shape);
        Assert.Contains("gate.e_score_correction_bias", layer.state_dict().Keys);
    }

    [Fact]
    public void SharedExpertsAreOneSwiGluOfCombinedWidth()
    {
        using var layer = Layer(Config(shared: 2));
        Assert.Equal(24, layer.shared_experts!.Width);
        using var noShared = Layer(Config(shared: 0));
        Assert.Null(noShared.shared_experts);
    }

    [Fact]
    public void LinearFactoryGetsHfNames()
    {
        var names = new List<string>();
        global::WhaleTech.Core.LinearFactory factory = (i, o, b, name) => { names.Add(name); return global::WhaleTech.Core.Linears.Standard()(i, o, b, name); };
        using var layer = new DeepSeekMoE(Config().Validate(), "model.layers.3.mlp", factory);
        Assert.Contains("model.layers.3.mlp.experts.5.up_proj", names);
        Assert.Contains("model.layers.3.mlp.shared_experts.down_proj", names);
        Assert.DoesNotContain(names, n => n.Contains(".gate.") || n.EndsWith(".gate"));
    }

    [Fact]
    public void AcceptsBatchAndFlatShapesAndRejectsBadOnes()
    {
        using var layer = Layer();
        using var x = torch.randn(2, 5, 16);
        using var y = layer.forward(x);
        Assert.Equal(x.shape, y.shape);
        using var yFlat = layer.forward(x.reshape(10, 16));
        Assert.True(yFlat.reshape(2, 5, 16).allclose(y, 1e-5, 1e-6));
        var e = Assert.Throws<WhaleArgumentException>(() => layer.forward(torch.randn(2, 5, 15)));
        Assert.Contains("x", e.Parameter);
    }

    [Fact]
    public void BadConfigIsAClearError()
    {
        Assert.Throws<WhaleArgumentException>(() => Layer(Config(groups: 3)));
        Assert.Throws<WhaleArgumentException>(() => Layer(Config(topK: 9)));
        Assert.Throws<WhaleArgumentException>(() => Layer(Config(scoring: "relu")));
    }

    [Fact]
    public void MatchesAHandWrittenFormulaForOneToken()
    {
        // y = shared(x) + Σ_{i ∈ top-K} scale · s_i / Σ s_sel · expert_i(x), no groups.
        using var layer = Layer(Config(groups: 1, topkGroup: 1));
        using var x = torch.randn(1, 16);
        using var y = layer.forward(x);
        using var s = torch.sigmoid(x.matmul(layer.gate.weight.t()))[0];
        var sv = s.data<float>().ToArray();
        var top = sv.Select((v, i) => (v, i)).OrderByDescending(p => p.v).Take(2).ToArray();
        using var expected = layer.shared_experts!.forward(x).clone();
        foreach (var (v, i) in top)
            expected.add_(layer.experts[i].forward(x) * (2.5 * v / top.Sum(p => p.v)));
        Assert.True(y.allclose(expected, 1e-5, 1e-6));
    }
}
