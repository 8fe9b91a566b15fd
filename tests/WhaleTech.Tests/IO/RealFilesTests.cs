// What real DeepSeek files do that WhaleTech's own do not: q_lora_rank 0 for "no query compression"
// (DeepSeek's inference/configs), a zero-width shared-expert block with empty tensors when n_shared_experts is
// 0 (DeepSeek's code and transformers' V3 class build Linear(D, 0)); and `checkpoint parity`: the fp32 bar,
// per-position and per-layer errors, --lenient, and a rope_theta off by one part in 10^4 detected.
using System.Text.Json.Nodes;
using TorchSharp;
using WhaleTech.Core;
using WhaleTech.Hub;
using WhaleTech.Cli;
using WhaleTech.IO;
using WhaleTech.Model;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace WhaleTech.Tests.IO;

public class RealFilesTests(ITestOutputHelper output) : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("whale-real-").FullName;
    public void Dispose() { try { Directory.Delete(_dir, true); } catch (IOException) { } }

    static int Whale(params string[] args) => WhaleTech.Cli.Cli.Run(WhaleCommands.Root(), args);

    static void EditConfig(string folder, Action<JsonObject> edit)
    {
        var path = Path.Combine(folder, "config.json");
        var o = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        edit(o);
        File.WriteAllText(path, o.ToJsonString());
    }

    [Fact]
    public void QLoraRankZeroMeansNoQueryCompression()
    {
        var cfg = HubParity.TinyConfigs["v2-lite"];                  // no q_lora
        Assert.Null(HubConfig.Parse(cfg.ToJson().Replace("\"q_lora_rank\": null", "\"q_lora_rank\": 0")).QLoraRank);
        var folder = Path.Combine(_dir, "qlora0");
        using (var m = HubParity.CreateTinyModel("v2-lite")) m.SavePretrained(folder);
        EditConfig(folder, o => o["q_lora_rank"] = 0);
        var (model, report) = DeepSeekLM.FromPretrained(folder);     // strict
        using (model)
        {
            Assert.True(report.IsExact);
            Assert.Null(model.Config.QLoraRank);
            using var ids = torch.tensor(new long[] { 1, 2, 3, 4 }, [1, 4]);
            using var logits = model.forward(ids);
            Assert.Equal(new long[] { 1, 4, model.Config.VocabSize }, logits.shape);
        }
        Assert.Equal(0, Whale("checkpoint", "generate", folder, "--device", "cpu", "--ids", "1,2,3", "--max-new-tokens", "2"));
    }

    [Fact]
    public void ZeroWidthSharedExpertsLoadAndSaveBack()
    {
        var cfg = HubParity.TinyConfigs["v3"] with { NSharedExperts = 0 };
        var folder = Path.Combine(_dir, "shared0");
        torch.manual_seed(3);
        using (var m = new DeepSeekLM(cfg)) m.SavePretrained(folder);
        // Add what DeepSeek's code / transformers write for n_shared_experts = 0: shared_experts of width 0.
        var file = Path.Combine(folder, "model.safetensors");
        var st = SafeTensorsFile.Open(file);
        var tensors = st.Tensors.Select(t => (t.Name, st.ToTensor(t.Name))).ToList();
        long d = cfg.HiddenSize;
        for (int l = cfg.FirstKDenseReplace; l < cfg.NumHiddenLayers; l++)
        {
            tensors.Add(($"model.layers.{l}.mlp.shared_experts.gate_proj.weight", torch.zeros(new long[] { 0, d })));
            tensors.Add(($"model.layers.{l}.mlp.shared_experts.up_proj.weight", torch.zeros(new long[] { 0, d })));
            tensors.Add(($"model.layers.{l}.mlp.shared_experts.down_proj.weight", torch.zeros(new long[] { d, 0 })));
        }
        SafeTensorsWriter.Write(file + ".new", tensors, new Dictionary<string, string> { ["format"] = "pt" });
        foreach (var (_, t) in tensors) t.Dispose();
        File.Move(file + ".new", file, overwrite: true);
        Assert.Contains(SafeTensorsFile.Open(file).Tensors, t => t.Name.Contains("shared_experts") && t.Shape.Contains(0L));

        var (model, report) = DeepSeekLM.FromPretrained(folder);     // strict: the empty tensors are not "unexpected"
        using (model)
        {
            Assert.True(report.IsExact, $"missing {string.Join(",", report.Missing)}; unexpected {string.Join(",", report.Unexpected)}");
            using var ids = torch.tensor(new long[] { 5, 6, 7 }, [1, 3]);
            using var logits = model.forward(ids);
            Assert.False(logits.isnan().any().item<bool>());
            var again = Path.Combine(_dir, "shared0-again");
            model.SavePretrained(again);
            var (back, report2) = DeepSeekLM.FromPretrained(again);
            using (back)
            {
                Assert.True(report2.IsExact);
                using var logits2 = back.forward(ids);
                Assert.Equal(0.0, (logits2 - logits).abs().max().item<float>());
            }
        }
        Assert.Equal(0, Whale("checkpoint", "generate", folder, "--device", "cpu", "--ids", "1,2,3", "--max-new-tokens", "2"));
    }

    [Fact]
    public void ParityDetectsRopeThetaOffByOnePartIn10000()
    {
        var folder = HubParity.ExportForTransformers(_dir).Single(f => Path.GetFileName(f) == "v3");
        var json = Path.Combine(_dir, "parity-ok.json");
        Assert.Equal(0, Whale("checkpoint", "parity", folder, "--device", "cpu", "--out", json));
        var ok = JsonNode.Parse(File.ReadAllText(json))!;
        Assert.Equal(HubParity.Batch, ok["position_errors"]!.AsArray().Count);
        Assert.Equal(HubParity.PromptLength, ok["position_errors"]![0]!.AsArray().Count);
        Assert.Equal(0.0, ok["max_relative_error"]!.GetValue<double>());

        EditConfig(folder, o => o["rope_theta"] = 10001.0);
        var (model, _) = DeepSeekLM.FromPretrained(folder);
        using (model)
        {
            Assert.Equal(10001, model.Config.RopeTheta);
            var r = HubParity.Compare(model, Path.Combine(folder, HubParity.ReferenceFile));
            output.WriteLine(r.Summary());
            output.WriteLine("layer errors: " + string.Join(", ", r.LayerErrors!.Select(e => e.ToString("E2"))));
            Assert.False(r.Passed);
            Assert.Equal(1, r.FirstDivergentLayer);                   // RoPE acts in the first decoder layer's attention
            Assert.True(r.RopeError > HubParityResult.Fp32Tolerance, $"RoPE tables: {r.RopeError:E2}");
        }
        var bad = Path.Combine(_dir, "parity-bad.json");
        Assert.Equal(1, Whale("checkpoint", "parity", folder, "--device", "cpu", "--out", bad));
        Assert.Equal(1, JsonNode.Parse(File.ReadAllText(bad))!["first_divergent_layer"]!.GetValue<int>());
    }

    [Fact]
    public void ParityLenientLoadsACheckpointWithExtraTensors()
    {
        var folder = HubParity.ExportForTransformers(_dir).Single(f => Path.GetFileName(f) == "v2-lite");
        var file = Path.Combine(folder, "model.safetensors");
        var st = SafeTensorsFile.Open(file);
        var tensors = st.Tensors.Select(t => (t.Name, st.ToTensor(t.Name))).Append(("model.extra.weight", torch.ones(2, 2))).ToList();
        SafeTensorsWriter.Write(file + ".new", tensors, new Dictionary<string, string> { ["format"] = "pt" });
        foreach (var (_, t) in tensors) t.Dispose();
        File.Move(file + ".new", file, overwrite: true);
        Assert.Equal(2, Whale("checkpoint", "parity", folder, "--device", "cpu", "--out", Path.Combine(_dir, "p.json")));
        Assert.Equal(0, Whale("checkpoint", "parity", folder, "--device", "cpu", "--lenient", "--out", Path.Combine(_dir, "p.json")));
    }
}
