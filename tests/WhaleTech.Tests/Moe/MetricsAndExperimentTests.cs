using TorchSharp;
using WhaleTech.Model;
using WhaleTech.Moe;
using static TorchSharp.torch;
using WhaleTech.Lab.Moe;

namespace WhaleTech.Tests.Moe;

public class MetricsAndExperimentTests
{
    [Fact]
    public void MaxVioDeadExpertsEntropyAndSmoothing()
    {
        Assert.Equal(0.0, LoadMetrics.MaxVio([5, 5, 5, 5]));
        Assert.Equal(3.0, LoadMetrics.MaxVio([20, 0, 0, 0]));                 // E − 1 when one expert takes all
        Assert.Equal(0.5, LoadMetrics.MaxVio([6, 4, 2, 4]), 12);              // (6 − 4) / 4
        Assert.Equal(3, LoadMetrics.DeadExperts([20, 0, 0, 0]));
        Assert.Equal(1.0, LoadMetrics.LoadEntropy([7, 7, 7, 7]), 12);
        Assert.Equal(0.0, LoadMetrics.LoadEntropy([9, 0, 0, 0]), 12);
        Assert.Equal(0.5, LoadMetrics.LoadEntropy([1, 1, 0, 0]), 12);         // ln 2 / ln 4
        Assert.Equal(new long[] { 3, 5 }, LoadMetrics.Sum([[1, 2], [2, 3]]));
        Assert.Equal(new[] { 1.0, 1.5, 2.5, 3.5 }, LoadMetrics.MovingAverage([1, 2, 3, 4], window: 2));
        Assert.Throws<global::WhaleTech.Runtime.WhaleArgumentException>(() => LoadMetrics.MaxVio([]));
    }

    [Fact]
    public void HistoryGivesPerStepMaxVioAndAnExpertByStepHeatmap()
    {
        var h = new LoadHistory();
        h.Add(new StepLoad(0, [[4, 4], [8, 0]]));
        h.Add(new StepLoad(1, [[6, 2], [4, 4]]));
        Assert.Equal(new[] { 0.0, 0.5 }, h.MaxVioBatch(0));
        Assert.Equal(new[] { 0.5, 0.25 }, h.MaxVioBatch());                    // mean over layers
        var m = h.Heatmap(1);
        Assert.Equal(new[] { 2, 2 }, new[] { m.GetLength(0), m.GetLength(1) });
        Assert.Equal(8.0, m[0, 0]);
        Assert.Equal(4.0, m[1, 1]);
    }

    [Fact]
    public void PlotsAreWrittenAsPngs()
    {
        var dir = Directory.CreateTempSubdirectory("whale-moe-plots").FullName;
        var h = new LoadHistory();
        for (int s = 0; s < 5; s++) h.Add(new StepLoad(s, [[10 - s, s, 5]]));
        LoadPlots.Heatmap(h, 0, Path.Combine(dir, "heat.png"), "t");
        LoadPlots.MaxVioCurves([("a", h.MaxVioBatch())], Path.Combine(dir, "vio.png"), "t", window: 2);
        LoadPlots.Dilemma([("a", 2.0, 0.1, 0.5, 0.05), ("b", 2.1, 0, 0.1, 0)], Path.Combine(dir, "dilemma.png"), "t");
        foreach (var f in new[] { "heat.png", "vio.png", "dilemma.png" })
            Plots.PngAssert.Readable(Path.Combine(dir, f));
        Assert.Empty(Directory.GetFiles(dir, "*.tmp"));
        Directory.Delete(dir, true);
    }

    [Fact]
    public void DeepSeekLMBuildsMoeLayersWithHfNamesAndTheExperimentRunsEndToEnd()
    {
        var o = new MoeExperimentOptions { Seeds = 1, Loop = new() { Steps = 3, BatchSize = 2 }, SequenceLength = 8, Model = new() { Hidden = 16, Layers = 2 }, Experts = 4, TopK = 2, ExpertWidth = 8, EvalBatches = 2, CorpusCharacters = 4000 };
        torch.manual_seed(0);
        using (var lm = new DeepSeekLM(o.ModelConfig(60), moe: DeepSeekMoE.Factory))
        {
            var names = lm.state_dict().Keys.ToHashSet();
            Assert.Contains("model.layers.1.mlp.gate.weight", names);
            Assert.Contains("model.layers.1.mlp.gate.e_score_correction_bias", names);
            Assert.Contains("model.layers.0.mlp.experts.3.down_proj.weight", names);
            Assert.Contains("model.layers.0.mlp.shared_experts.up_proj.weight", names);
            Assert.Equal(2, MoeLayers.Find(lm).Count);
        }
        var lossFree = MoeExperiment.Run(BalanceMethod.LossFree(1e-2), 0, o, torch.CPU);
        var aux = MoeExperiment.Run(BalanceMethod.AuxLoss(1e-2), 0, o, torch.CPU);
        foreach (var r in new[] { lossFree, aux })
        {
            Assert.True(double.IsFinite(r.ValLoss) && r.ValLoss > 0);
            Assert.Equal(3, r.MaxVioBatch.Length);                              // one load record per optimizer step
            Assert.InRange(r.MaxVioGlobal, 0, o.Experts - 1);
            Assert.Equal(2, r.MaxVioGlobalPerLayer.Length);
        }
        var summary = MoeExperiment.Summarize([lossFree, aux]);
        Assert.Equal(2, summary.Count);
    }
}
