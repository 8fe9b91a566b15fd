using TorchSharp;
using WhaleTech.Attention;
using WhaleTech.Lab.Mla;

namespace WhaleTech.Tests.Attention;

public class MlaQualityTests
{
    [Fact]
    public void ParametersAreMatchedAndKvShrinks()
    {
        var o = new MlaQualityOptions();
        var counts = o.Attentions.ToDictionary(a => a, a => new WhaleTech.Model.DeepSeekLM(MlaQuality.Config(o, a)).ParameterCount());
        foreach (var c in counts.Values) Assert.InRange(c, counts["mha"] * 0.98, counts["mha"] * 1.02); // within one MLP row of 3·D·layers
    }

    [Fact]
    public void MqarBatchMasksExactlyTheQueriedValues()
    {
        var o = new MlaQualityOptions { Pairs = 4, Queries = 3, Keys = 8, Values = 8 };
        var (ids, targets, mask) = MlaQuality.Batch(o, 5, new Random(1));
        Assert.Equal(new long[] { 5, 14 }, ids.shape);
        Assert.Equal(5 * 3, mask.sum().item<long>());
        Assert.True(targets[mask].ge(o.Keys).all().item<bool>());   // every target is a value token
        Assert.True(ids[mask].lt(o.Keys).all().item<bool>());       // read at a key token
    }

    [Fact]
    public void TinyRunHasOneRowPerAttentionAndSeedAndAPlot()
    {
        var o = new MlaQualityOptions { Seeds = 2, Loop = new() { Steps = 3, BatchSize = 4 }, EvalSequences = 8, Model = new() { Hidden = 32 }, Pairs = 4, Queries = 2, Keys = 8, Values = 8 };
        var result = MlaQuality.Run(o, torch.CPU);
        Assert.Equal(8, result.Runs.Count);
        Assert.Equal(["mha", "gqa", "mqa", "mla"], result.Summary.Select(s => s.Attention));
        Assert.All(result.Runs, r => { Assert.InRange(r.EvalAccuracy, 0, 1); Assert.True(double.IsFinite(r.EvalLoss)); });
        var kv = result.Summary.ToDictionary(s => s.Attention, s => s.KvBytesPerTokenBf16);
        Assert.True(kv["mha"] > kv["gqa"] && kv["gqa"] > kv["mqa"] && kv["mha"] > kv["mla"]);
        Plots.PngAssert.Readable(MlaQuality.Plot(result), "mla quality plot");
    }
}
