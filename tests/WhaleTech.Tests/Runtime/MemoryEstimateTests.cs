using WhaleTech.Core;
using WhaleTech.Hub;
using WhaleTech.IO;
using WhaleTech.Model;
using WhaleTech.Runtime;

namespace WhaleTech.Tests.Runtime;

/// <summary>The estimates checked before work starts, the budget, thread limits and strict config.json files.</summary>
public class MemoryEstimateTests
{
    [Theory]
    [InlineData("deepseek-v3", 671e9, 700e9)]        // 671B + the MTP module
    [InlineData("deepseek-v2-lite", 15.0e9, 16.5e9)] // 15.7B
    [InlineData("deepseek-v2", 230e9, 245e9)]        // 236B
    public void ParameterCountsMatchThePublishedModels(string preset, double min, double max)
    {
        double p = ModelMemory.Parameters(ModelPresets.Get(preset));
        Assert.InRange(p, min, max);
    }

    [Fact]
    public void TheAnalyticCountMatchesABuiltTinyModel()
    {
        foreach (var attention in new[] { "mla", "mha", "gqa", "mqa" })
        {
            var cfg = ModelConfig.Tiny(attention);
            using var m = new DeepSeekLM(cfg);
            double exact = m.ParameterCount(), estimate = ModelMemory.Parameters(cfg);
            Assert.InRange(estimate / exact, 0.9, 1.1);
        }
    }

    [Fact]
    public void AnEstimateOverTheBudgetNamesTheParametersAndTheSizes()
    {
        var e = Assert.Throws<WhaleArgumentException>(() => ModelMemory.ForTraining(ModelPresets.DeepSeekV3, 1, 4096).EnsureFits("--model", 8L << 30));
        Assert.Equal("--model", e.Parameter);
        Assert.Contains("parameters", e.Message);
        Assert.Contains("optimizer state", e.Message);
        Assert.Contains("8 GiB", e.Message);
        Assert.Throws<WhaleArgumentException>(() => new DeepSeekLM(ModelConfig.Tiny() with { HiddenSize = 1 << 20, KvLoraRank = 1 << 19, QkNopeHeadDim = 1 << 18, VHeadDim = 1 << 18, QkRopeHeadDim = 1 << 17 }));
    }

    [Theory]
    [InlineData("512MiB", 512L << 20)]
    [InlineData("8GiB", 8L << 30)]
    [InlineData("1.5GB", 1_500_000_000L)]
    [InlineData("2g", 2L << 30)]
    public void BudgetsParse(string text, long bytes) => Assert.Equal(bytes, MemoryBudget.Parse("--max-memory", text));

    [Theory]
    [InlineData("0")]
    [InlineData("-1GiB")]
    [InlineData("nan")]
    [InlineData("1e30")]
    [InlineData("lots")]
    [InlineData("")]
    public void BadBudgetsAreArgumentErrors(string text) => Assert.Equal("--max-memory", Assert.Throws<WhaleArgumentException>(() => MemoryBudget.Parse("--max-memory", text)).Parameter);

    [Fact]
    public void AvailableMemoryIsPositive() => Assert.True(MemoryBudget.Available() > 0);

    [Fact]
    public void ThreadsBeyondTheMachineAreRejected()
    {
        Assert.Equal(1, ThreadLimits.Check("--threads", 1));
        Assert.Equal(0, ThreadLimits.Check("--threads", 0, allowZero: true));
        Assert.Throws<WhaleArgumentException>(() => ThreadLimits.Check("--threads", 0));
        Assert.Throws<WhaleArgumentException>(() => ThreadLimits.Check("--threads", Environment.ProcessorCount + 1));
        Assert.Throws<WhaleArgumentException>(() => ThreadLimits.Check("--threads", 100_000));
    }

    [Fact]
    public void TinyChecksItsArgumentsBeforeDividing()
    {
        Assert.Equal("heads", Assert.Throws<WhaleArgumentException>(() => ModelConfig.Tiny(heads: 0)).Parameter);
        Assert.Equal("hidden", Assert.Throws<WhaleArgumentException>(() => ModelConfig.Tiny(hidden: -4)).Parameter);
        Assert.Equal("heads", Assert.Throws<WhaleArgumentException>(() => ModelConfig.Tiny(hidden: 64, heads: 5)).Parameter);
        Assert.Equal("attention", Assert.Throws<WhaleArgumentException>(() => ModelConfig.Tiny("xla")).Parameter);
    }

    [Fact]
    public void DuplicateKeysAreNamedAtAnyDepth()
    {
        var e = Assert.Throws<WhaleFormatException>(() => ModelConfig.FromJson("""{"hidden_size": 64, "hidden_size": 32}""", "c.json"));
        Assert.Contains("'hidden_size' appears more than once", e.Message);
        e = Assert.Throws<WhaleFormatException>(() => HubConfig.Parse("""{"rope_scaling": {"type": "yarn", "factor": 2, "factor": 4}}""", "c.json"));
        Assert.Contains("rope_scaling.factor", e.Message);
        e = Assert.Throws<WhaleFormatException>(() => ModelConfig.FromJson("""{"zz": 1, "zz": 2}""", "c.json"));   // unknown keys too (once an ArgumentException)
        Assert.Contains("'zz'", e.Message);
    }

    [Fact]
    public void ConfigFilesNeedTheCoreFieldsAndADeepSeekModelType()
    {
        var dir = Directory.CreateTempSubdirectory("whale-cfg-").FullName;
        try
        {
            var path = Path.Combine(dir, "config.json");
            File.WriteAllText(path, """{"num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 64}""");
            Assert.Contains("hidden_size", Assert.Throws<WhaleFormatException>(() => ModelConfig.Load(path)).Message);
            Assert.Contains("hidden_size", Assert.Throws<WhaleFormatException>(() => HubConfig.Load(dir)).Message);
            File.WriteAllText(path, ModelConfig.Tiny().ToJson().Replace("\"deepseek_v3\"", "\"llama\""));
            Assert.Contains("model_type", Assert.Throws<WhaleFormatException>(() => HubConfig.Load(dir)).Message);
            File.WriteAllText(path, ModelConfig.Tiny().ToJson());
            Assert.Equal(64, HubConfig.Load(dir).HiddenSize);
            Assert.Equal("config", Assert.Throws<WhaleArgumentException>(() => ModelConfig.Load(dir)).Parameter);   // a folder given for the file
            File.WriteAllText(path, ModelConfig.Tiny().ToJson().Replace("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 1000000"));
            Assert.Contains("num_hidden_layers", Assert.Throws<WhaleFormatException>(() => HubConfig.Load(dir)).Message);
        }
        finally { Directory.Delete(dir, true); }
    }
}
