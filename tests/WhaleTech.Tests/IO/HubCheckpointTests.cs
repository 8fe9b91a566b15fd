using System.Text.Json;
using System.Text.Json.Nodes;
using TorchSharp;
using WhaleTech.IO;
using WhaleTech.Model;
using WhaleTech.Runtime;
using static TorchSharp.torch;
using WhaleTech.Hub;

namespace WhaleTech.Tests.IO;

/// <summary>FromPretrained / SavePretrained on Hub-format folders, without transformers: WhaleTech round trips,
/// the V2 format (no router bias), FP8, MTP keys, transformers 5's fused experts and non-interleaved RoPE.</summary>
public class HubCheckpointTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("whale-hub-").FullName;
    public HubCheckpointTests() => Backend.Initialize();
    public void Dispose() { try { Directory.Delete(_dir, true); } catch (IOException) { } }

    static Tensor Ids(long vocab) { using var g = new Generator(7); return torch.randint(0, vocab, [2, 12], dtype: ScalarType.Int64, generator: g); }

    static Tensor Logits(DeepSeekLM m, Tensor ids) { using var _ = torch.no_grad(); return m.forward(ids); }

    /// <summary>Rewrites a single-file checkpoint's tensors through <paramref name="edit"/>.</summary>
    static void EditWeights(string folder, Func<Dictionary<string, Tensor>, Dictionary<string, Tensor>> edit)
    {
        var path = Path.Combine(folder, CheckpointReader.SingleFileName);
        var file = SafeTensorsFile.Open(path);
        var tensors = file.ReadAll().ToDictionary(t => t.Name, t => t.Tensor);
        var edited = edit(tensors);
        SafeTensorsWriter.Write(path, edited.Select(kv => (kv.Key, kv.Value)).ToList(), new Dictionary<string, string> { ["format"] = "pt" });
    }

    [Theory]
    [InlineData("v3")]
    [InlineData("v2-lite-v3class")]
    [InlineData("v2-lite")]
    public void ShardedSaveLoadsBackStrictWithIdenticalLogits(string name)
    {
        using var model = HubParity.CreateTinyModel(name);
        var folder = Path.Combine(_dir, name);
        var report = model.SavePretrained(folder, maxShardBytes: 40_000);
        Assert.True(report.Files.Count(f => f.StartsWith("model-")) >= 3, string.Join(", ", report.Files));
        var index = JsonNode.Parse(File.ReadAllText(Path.Combine(folder, CheckpointReader.IndexFileName)))!;
        long shardBytes = Directory.GetFiles(folder, "model-*.safetensors").Sum(f => SafeTensorsFile.Open(f).DataLength);
        Assert.Equal(shardBytes, index["metadata"]!["total_size"]!.GetValue<long>());         // transformers' meaning: bytes of tensor data
        Assert.Equal(report.Tensors, index["weight_map"]!.AsObject().Count);
        Assert.Empty(Directory.GetDirectories(_dir, ".*"));                                    // no temp folder left behind

        var (loaded, load) = DeepSeekLM.FromPretrained(folder);
        using (loaded)
        {
            Assert.True(load.IsExact);
            using var ids = Ids(model.Config.VocabSize);
            using var a = Logits(model, ids);
            using var b = Logits(loaded, ids);
            Assert.True(TensorAssert.Same(a, b));
            Assert.Equal(name == "v2-lite" ? "deepseek_v2" : "deepseek_v3", loaded.Config.ModelType);
        }
    }

    [Fact]
    public void V2RoutersHaveNoBiasInTheCheckpointAndV3RoutersDo()
    {
        using var v2 = HubParity.CreateTinyModel("v2-lite");
        using var v3 = HubParity.CreateTinyModel("v3");
        Assert.DoesNotContain(StateDict.Entries(v2), e => e.Name.EndsWith(WhaleTech.Moe.Router.BiasName));
        Assert.Equal(2, StateDict.Entries(v3).Count(e => e.Name.EndsWith(WhaleTech.Moe.Router.BiasName)));   // 2 MoE layers
        Assert.Contains(v2.named_buffers(), b => b.name.EndsWith(WhaleTech.Moe.Router.BiasName));            // still a buffer: moves with .to()

        // A V3-format file (with biases) into a V2 model: the biases are unexpected, by name.
        var folder = Path.Combine(_dir, "v3file");
        v3.SavePretrained(folder);
        var reader = CheckpointReader.Open(folder);
        using var target = new DeepSeekLM(v3.Config with { TopkMethod = "greedy", ScoringFunc = "softmax" });
        var e = Assert.Throws<WhaleFormatException>(() => HubCheckpoint.LoadInto(target, reader));
        Assert.Contains("model.layers.1.mlp.gate.e_score_correction_bias", e.Message);
        var lenient = HubCheckpoint.LoadInto(target, reader, strict: false);
        Assert.Equal(2, lenient.Unexpected.Count);
    }

    [Fact]
    public void SavingIntoAnExistingFolderReplacesWeightsAndKeepsOtherFiles()
    {
        var folder = Path.Combine(_dir, "m");
        using var big = HubParity.CreateTinyModel("v3");
        big.SavePretrained(folder, maxShardBytes: 40_000);
        File.WriteAllText(Path.Combine(folder, "tokenizer.json"), "{}");
        using var small = HubParity.CreateTinyModel("v2-lite", seed: 1);
        small.SavePretrained(folder);                                                          // now one file, no stale shards
        Assert.Equal(["config.json", "model.safetensors", "tokenizer.json"], Directory.GetFiles(folder).Select(f => Path.GetFileName(f)!).Order().ToArray());
        Assert.False(Directory.Exists(folder + ".old"));
        Assert.Equal("deepseek_v2", HubConfig.Load(folder).ModelType);
    }

    [Fact]
    public void Fp8SaveIsWithinE4M3RoundingAndLoadsThroughTheDequantizer()
    {
        using var model = HubParity.CreateTinyModel("v3");
        var folder = Path.Combine(_dir, "fp8");
        var report = HubCheckpoint.Save(model, folder, fp8: true, fp8BlockSize: 16);          // 16×16 blocks: several per matrix
        Assert.True(report.Fp8Weights > 20);
        var file = SafeTensorsFile.Open(Path.Combine(folder, CheckpointReader.SingleFileName));
        var w = file["model.layers.1.mlp.experts.3.up_proj.weight"];
        Assert.Equal(SafeTensorsDType.F8_E4M3, w.DType);
        Assert.Equal(new long[] { 1, 2 }, file["model.layers.1.mlp.experts.3.up_proj.weight_scale_inv"].Shape); // [16, 32] in 16-blocks
        Assert.Equal(SafeTensorsDType.F32, file["model.embed_tokens.weight"].DType);          // not quantized
        Assert.Equal(SafeTensorsDType.F32, file["model.layers.1.mlp.gate.weight"].DType);     // router stays
        Assert.Equal(16, HubConfig.Fp8BlockSize(HubConfig.Load(folder)));

        var (loaded, load) = DeepSeekLM.FromPretrained(folder);
        using (loaded)
        {
            Assert.True(load.IsExact);
            var original = StateDict.Entries(model).ToDictionary(e => e.Name, e => e.Tensor);
            foreach (var (n, t) in StateDict.Entries(loaded))
            {
                var o = original[n];
                if (!HubCheckpoint.IsFp8Eligible(n, o)) { Assert.True(TensorAssert.Same(o, t), n); continue; }
                // E4M3: 3 mantissa bits → |error| ≤ 2⁻⁴·|w| for normal values, and ≤ half the subnormal step s·2⁻¹⁰ below them.
                var (_, s) = HubCheckpoint.QuantizeFp8(o, 16);
                using var sFull = s.repeat_interleave(16, 0).repeat_interleave(16, 1).narrow(0, 0, o.shape[0]).narrow(1, 0, o.shape[1]);
                using var bound = o.abs() * Math.Pow(2, -4) + sFull * Math.Pow(2, -10) + 1e-12;
                Assert.True((t - o).abs().le(bound).all().item<bool>(), n);
                Assert.False(TensorAssert.Same(o, t));                                            // it really was rounded
            }
        }
    }

    [Fact]
    public void MtpLayerKeysNeedMtpModulesOrALenientLoad()
    {
        using var model = HubParity.CreateTinyModel("v3");
        var folder = Path.Combine(_dir, "mtp");
        model.SavePretrained(folder);
        EditWeights(folder, t =>
        {
            long d = model.Config.HiddenSize;
            t["model.layers.3.enorm.weight"] = torch.ones(d);
            t["model.layers.3.hnorm.weight"] = torch.ones(d);
            t["model.layers.3.eh_proj.weight"] = torch.zeros(d, 2 * d);
            t["model.layers.3.shared_head.norm.weight"] = torch.ones(d);
            return t;
        });
        var e = Assert.Throws<WhaleFormatException>(() => DeepSeekLM.FromPretrained(folder));
        Assert.Contains("model.layers.3.*", e.Message);
        Assert.Contains("MTP", e.Message);
        Assert.Contains("strict: false", e.Message);
        var (loaded, report) = DeepSeekLM.FromPretrained(folder, strict: false);
        using (loaded)
        {
            Assert.Equal(4, report.Unexpected.Count(n => n.StartsWith("model.layers.3.")));
            Assert.Empty(report.Missing);
        }
    }

    [Fact]
    public void AModelWithMtpModulesRoundTripsThroughTheHubFormatStrict()
    {
        // Issue 8: the MTP layer (model.layers.{N}: enorm, hnorm, eh_proj, shared_head, embed_tokens copy, the block)
        // is saved as DeepSeek-V3 ships it and loads back strict into MTP modules with identical outputs.
        var cfg = HubParity.TinyConfigs["v3"] with { NumNextnPredictLayers = 1 };
        torch.manual_seed(3);
        using var model = new DeepSeekLM(cfg);
        model.eval();
        var folder = Path.Combine(_dir, "with-mtp");
        model.SavePretrained(folder, maxShardBytes: 64 * 1024);                       // sharded too
        int n = cfg.NumHiddenLayers;
        var names = CheckpointReader.Open(folder).Names;
        foreach (var key in new[] { "enorm.weight", "hnorm.weight", "eh_proj.weight", "shared_head.norm.weight", "shared_head.head.weight", "embed_tokens.weight", "self_attn.kv_a_proj_with_mqa.weight", "mlp.gate.e_score_correction_bias" })
            Assert.Contains($"model.layers.{n}.{key}", names);
        var (loaded, report) = DeepSeekLM.FromPretrained(folder);
        using (loaded)
        {
            Assert.True(report.IsExact);
            loaded.eval();
            using var ids = torch.randint(0, cfg.VocabSize, [2, 9], generator: new torch.Generator(4));
            using var _ = torch.no_grad();
            var (mainA, mtpA) = model.ForwardWithMtp(ids);
            var (mainB, mtpB) = loaded.ForwardWithMtp(ids);
            Assert.True(mainA.equal(mainB).all().item<bool>());
            Assert.Equal(mtpA.Length, mtpB.Length);
            for (int k = 0; k < mtpA.Length; k++) Assert.True(mtpA[k].equal(mtpB[k]).all().item<bool>(), $"MTP depth {k + 1}");
        }
    }

    [Fact]
    public void MissingAndUnknownKeysAreReportedByName()
    {
        using var model = HubParity.CreateTinyModel("v2-lite-v3class");
        var folder = Path.Combine(_dir, "broken");
        model.SavePretrained(folder);
        EditWeights(folder, t =>
        {
            t.Remove("model.layers.0.self_attn.kv_b_proj.weight");
            t["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(4);
            return t;
        });
        var e = Assert.Throws<WhaleFormatException>(() => DeepSeekLM.FromPretrained(folder));
        Assert.Contains("model.layers.0.self_attn.kv_b_proj.weight", e.Message);
        Assert.Contains("model.layers.0.self_attn.rotary_emb.inv_freq", e.Message);
        var (loaded, report) = DeepSeekLM.FromPretrained(folder, strict: false);
        using (loaded)
        {
            Assert.Equal(["model.layers.0.self_attn.kv_b_proj.weight"], report.Missing);
            Assert.Equal(["model.layers.0.self_attn.rotary_emb.inv_freq"], report.Unexpected);
        }
    }

    [Fact]
    public void Transformers5FusedExpertsAndNonInterleavedRopeLoadToTheSameFunction()
    {
        using var model = HubParity.CreateTinyModel("v3");
        var cfg = model.Config;
        var folder = Path.Combine(_dir, "v5");
        model.SavePretrained(folder);
        int dr = cfg.QkRopeHeadDim, head = cfg.QkNopeHeadDim + dr;
        // transformers' non-interleaved order: stored row i ← interleaved row 2i, stored row Dr/2+i ← row 2i+1.
        Tensor Deinterleave(Tensor w, IEnumerable<long> starts)
        {
            var p = Enumerable.Range(0, (int)w.shape[0]).Select(i => (long)i).ToArray();
            foreach (var s in starts)
                for (int i = 0; i < dr / 2; i++) { p[s + i] = s + 2 * i; p[s + dr / 2 + i] = s + 2 * i + 1; }
            return w.index_select(0, torch.tensor(p));
        }
        EditWeights(folder, t =>
        {
            for (int l = 1; l < cfg.NumHiddenLayers; l++)
            {
                string pre = $"model.layers.{l}.mlp.experts";
                var gate = Enumerable.Range(0, 8).Select(e => t[$"{pre}.{e}.gate_proj.weight"]).ToArray();
                var up = Enumerable.Range(0, 8).Select(e => t[$"{pre}.{e}.up_proj.weight"]).ToArray();
                var down = Enumerable.Range(0, 8).Select(e => t[$"{pre}.{e}.down_proj.weight"]).ToArray();
                t[$"{pre}.gate_up_proj"] = torch.cat([torch.stack(gate), torch.stack(up)], dim: 1);   // [E, 2F, D]
                t[$"{pre}.down_proj"] = torch.stack(down);                                            // [E, D, F]
                foreach (var k in t.Keys.Where(k => k.StartsWith(pre + ".") && k.EndsWith("_proj.weight")).ToList()) t.Remove(k);
            }
            for (int l = 0; l < cfg.NumHiddenLayers; l++)
            {
                var q = $"model.layers.{l}.self_attn.q_b_proj.weight";
                t[q] = Deinterleave(t[q], Enumerable.Range(0, cfg.NumAttentionHeads).Select(h => (long)h * head + cfg.QkNopeHeadDim));
                var kv = $"model.layers.{l}.self_attn.kv_a_proj_with_mqa.weight";
                t[kv] = Deinterleave(t[kv], [cfg.KvLoraRank]);
            }
            return t;
        });
        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(folder, "config.json")))!.AsObject();
        json["rope_interleave"] = false;
        File.WriteAllText(Path.Combine(folder, "config.json"), json.ToJsonString());

        var (loaded, report) = DeepSeekLM.FromPretrained(folder);
        using (loaded)
        {
            Assert.True(report.IsExact);
            using var ids = Ids(cfg.VocabSize);
            using var a = Logits(model, ids);
            using var b = Logits(loaded, ids);
            Assert.True(TensorAssert.Same(a, b));                                                   // the permutation is exact
        }
    }
}
