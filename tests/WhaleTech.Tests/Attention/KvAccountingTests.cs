using System.CommandLine;
using System.Text.Json;
using TorchSharp;
using WhaleTech.Attention;
using WhaleTech.Cli.Commands;
using WhaleTech.Model;
using static TorchSharp.torch;
using WhaleTech.Core;
using WhaleTech.Lab.Mla;

namespace WhaleTech.Tests.Attention;

public class KvAccountingTests
{
    [Fact]
    public void DeepSeekV3PerLayerElementsAreTheIssueNumbers()
    {
        var s = KvShape.From(ModelPresets.DeepSeekV3);
        Assert.Equal(32768, KvAccounting.ElementsPerTokenPerLayer(s, KvLayout.Mha));              // 2·128·128
        Assert.Equal(2048, KvAccounting.ElementsPerTokenPerLayer(s, KvLayout.Gqa));               // 2·8·128
        Assert.Equal(256, KvAccounting.ElementsPerTokenPerLayer(s, KvLayout.Mqa));                // 2·128
        Assert.Equal(576, KvAccounting.ElementsPerTokenPerLayer(s, KvLayout.MlaLatent));          // 512+64
        Assert.Equal(40960, KvAccounting.ElementsPerTokenPerLayer(s, KvLayout.MlaMaterialized));  // 128·(192+128)
        Assert.Equal(576L * 61, KvAccounting.ElementsPerToken(s, KvLayout.MlaLatent));
    }

    [Fact]
    public void Table9AndTheHeadlineAreReproduced()
    {
        foreach (var cell in DeepSeekV2KvPaper.Table9())
            Assert.Equal(cell.PaperThousands, Math.Round(cell.Elements / 1000.0, 1)); // the paper prints one decimal of K
        var elements = DeepSeekV2KvPaper.Table9().Select(c => c.Elements).ToArray();
        Assert.Equal([110592L, 15552, 860160, 34560], elements);
        Assert.Equal((194560L, 34560L), DeepSeekV2KvPaper.HeadlineElements());
        Assert.Equal(0.822, Math.Round(DeepSeekV2KvPaper.HeadlineReduction(16), 3));
        Assert.Equal(0.933, Math.Round(DeepSeekV2KvPaper.HeadlineReduction(6), 3));
    }

    [Fact]
    public void CacheSizeAndMaxContextFollowFromBytesPerToken()
    {
        var s = KvShape.From(ModelPresets.Llama3_70B);
        Assert.Equal(2048L * 80, KvAccounting.ElementsPerToken(s, KvLayout.Gqa));                  // 320 KiB/token in bf16
        Assert.Equal(2048.0 * 80 * 2 * 4 * 1000, KvAccounting.CacheBytes(s, KvLayout.Gqa, 4, 1000, 2));
        double budget = 10.0 * (1L << 30);
        long max = KvAccounting.MaxContext(s, KvLayout.Gqa, 2, budget, 2);
        Assert.True(KvAccounting.CacheBytes(s, KvLayout.Gqa, 2, max, 2) <= budget);
        Assert.True(KvAccounting.CacheBytes(s, KvLayout.Gqa, 2, max + 1, 2) > budget);
        Assert.Equal(1.0, KvAccounting.BytesPerElement("fp8"));
        Assert.Equal(4.0, KvAccounting.BytesPerElement("FP32"));
        var e = Assert.Throws<WhaleTech.Runtime.WhaleArgumentException>(() => KvAccounting.BytesPerElement("int4"));
        Assert.Equal("dtype", e.Parameter);
    }

    [Theory]
    [InlineData("mha", MlaMode.Auto, "fp32")]
    [InlineData("gqa", MlaMode.Auto, "fp32")]
    [InlineData("mqa", MlaMode.Auto, "bf16")]
    [InlineData("mla", MlaMode.Naive, "fp32")]
    [InlineData("mla", MlaMode.Absorbed, "bf16")]
    [InlineData("mla", MlaMode.Auto, "fp32")]
    public void AllocatedCachesHaveExactlyTheAccountedBytes(string kind, MlaMode mode, string dtype)
    {
        using var scope = torch.NewDisposeScope();
        var cfg = ModelConfig.Tiny(kind, vocab: 32, hidden: 32, layers: 3, heads: 4) with { NumKeyValueHeads = kind == "gqa" ? 2 : 4, KvLoraRank = 12, QkRopeHeadDim = 4, QkNopeHeadDim = 6, VHeadDim = 10, HeadDim = kind == "mla" ? null : 8 };
        var model = new DeepSeekLM(cfg);
        if (dtype == "bf16") model.to(ScalarType.BFloat16);
        model.SetMlaMode(mode);
        var shape = KvShape.From(cfg, gqaKvHeads: kind == "gqa" ? 2 : null);
        var layout = KvAccounting.LayoutOf(cfg, mode);
        using var cache = model.CreateCache(3, 17);
        Assert.Equal(KvAccounting.CacheBytes(shape, layout, 3, 17, KvAccounting.BytesPerElement(dtype)), cache.Bytes);
    }

    static string RunKv(params string[] args)
    {
        var output = new StringWriter();
        int rc = KvCommand.Build().Parse(args).Invoke(new InvocationConfiguration { Output = output, EnableDefaultExceptionHandler = false });
        Assert.Equal(0, rc);
        return output.ToString();
    }

    [Fact]
    public void WhaleKvJsonGivesThePerLayerElements()
    {
        using var doc = JsonDocument.Parse(RunKv("--model", "deepseek-v3", "--json"));
        var rows = doc.RootElement.GetProperty("rows").EnumerateArray()
            .ToDictionary(r => r.GetProperty("attention").GetString()!, r => r.GetProperty("elements_per_token_per_layer").GetInt64());
        Assert.Equal(32768, rows["MHA"]);
        Assert.Equal(2048, rows["GQA-8"]);
        Assert.Equal(256, rows["MQA"]);
        Assert.Equal(576, rows["MLA latent"]);
        Assert.Equal(40960, rows["MLA materialized"]);
        Assert.Equal(61, doc.RootElement.GetProperty("layers").GetInt32());
    }

    [Fact]
    public void WhaleKvTablePaperAndConfigFileRun()
    {
        Assert.Contains("MLA latent", RunKv("--model", "deepseek-v2-lite", "--dtype", "fp8", "--batch", "8"));
        Assert.Contains("93.3%", RunKv("--paper"));
        var path = Path.Combine(Path.GetTempPath(), $"whale-kv-{Guid.NewGuid():N}.json");
        try
        {
            ModelPresets.DeepSeekV2.Save(path);
            using var doc = JsonDocument.Parse(RunKv("--model", path, "--json"));
            Assert.Equal(60, doc.RootElement.GetProperty("layers").GetInt32());
        }
        finally { File.Delete(path); }
        Assert.Throws<WhaleTech.Runtime.WhaleArgumentException>(() => KvCommand.Report("gpt-9", 1, 1, 1, "bf16"));
    }
}
