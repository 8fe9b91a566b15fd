using TorchSharp;
using WhaleTech.Attention;
using WhaleTech.IO;
using WhaleTech.Model;
using WhaleTech.Runtime;
using WhaleTech.Training;
using static TorchSharp.torch;
using WhaleTech.Core;

namespace WhaleTech.Tests.Model;

/// <summary>Multi-token prediction (DeepSeek-V3 §2.2) and MTP speculative decoding.</summary>
public class MtpTests : IDisposable
{
    readonly string _dir = Path.Combine(Path.GetTempPath(), "whaletech-mtp-" + Guid.NewGuid().ToString("N")[..8]);
    public MtpTests() { Backend.Initialize(); Directory.CreateDirectory(_dir); }
    public void Dispose() => Directory.Delete(_dir, true);

    static ModelConfig Config(int depth, string kind = "mla") => CachedDecodeTests.Config(kind, qLora: kind == "mla") with { NumNextnPredictLayers = depth };

    static DeepSeekLM Build(ModelConfig cfg, int seed)
    {
        torch.manual_seed(seed);
        return new DeepSeekLM(cfg);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void StateDictKeysAreTheHubKeys(int depth)
    {
        var cfg = Config(depth);
        var plainKeys = StateDict.Entries(Build(cfg with { NumNextnPredictLayers = 0 }, 1)).Select(e => e.Name).ToList();
        var keys = StateDict.Entries(Build(cfg, 1)).Select(e => e.Name).ToList();
        int n = cfg.NumHiddenLayers;
        // A dense config: every MTP layer holds what main layer N−1 holds, plus the MTP parts.
        var blockSuffixes = plainKeys.Where(k => k.StartsWith($"model.layers.{n - 1}.")).Select(k => k[$"model.layers.{n - 1}.".Length..]).ToList();
        Assert.Contains("self_attn.kv_a_proj_with_mqa.weight", blockSuffixes);
        var expected = new List<string>(plainKeys);
        for (int j = 0; j < depth; j++)
        {
            expected.AddRange(blockSuffixes.Select(s => $"model.layers.{n + j}.{s}"));
            expected.AddRange(new[] { "enorm.weight", "hnorm.weight", "eh_proj.weight", "shared_head.norm.weight", "shared_head.head.weight", "embed_tokens.weight" }
                .Select(s => $"model.layers.{n + j}.{s}"));
        }
        Assert.Equal(expected.Order(StringComparer.Ordinal), keys.Order(StringComparer.Ordinal));
        Assert.Equal(keys.Count, keys.Distinct().Count());
        var entries = StateDict.Entries(Build(cfg, 1)).ToDictionary(e => e.Name, e => e.Tensor);
        Assert.Equal(new long[] { cfg.HiddenSize, 2 * cfg.HiddenSize }, entries[$"model.layers.{n}.eh_proj.weight"].shape);
    }

    [Fact]
    public void MoeConfigGivesTheMtpBlockAMoeMlp()
    {
        var cfg = ModelConfig.Tiny("mla", vocab: 20, hidden: 16, layers: 2, heads: 2) with
        { NRoutedExperts = 4, NSharedExperts = 1, NumExpertsPerTok = 2, MoeIntermediateSize = 8, FirstKDenseReplace = 1, NumNextnPredictLayers = 1 };
        var keys = StateDict.Entries(Build(cfg, 1)).Select(e => e.Name).ToHashSet();
        Assert.Contains("model.layers.2.mlp.experts.3.down_proj.weight", keys);
        Assert.Contains("model.layers.2.mlp.shared_experts.up_proj.weight", keys);
    }

    [Fact]
    public void DepthZeroLeavesTheModelUnchangedAndMtpDoesNotChangeMainLogits()
    {
        var ids = torch.tensor(new long[] { 1, 5, 9, 3, 7, 2 }).unsqueeze(0);
        using var plain = Build(Config(0), 3);
        using var withMtp = Build(Config(2), 3);
        Assert.Empty(plain.MtpModules);
        Assert.DoesNotContain(StateDict.Entries(plain), e => e.Name.Contains("mtp") || e.Name.StartsWith("model.layers.2."));
        using var noGrad = torch.no_grad();
        Assert.True(Same(plain.forward(ids), withMtp.forward(ids)));                  // main weights drawn first, same RNG
        Assert.True(Same(plain.forward(ids), withMtp.ForwardWithMtp(ids).Logits));
        // Parameters: the MTP modules add only their own tensors (embedding and head are shared, not copied).
        long own = withMtp.MtpModules.Sum(m => m.parameters().Sum(p => p.numel()));
        Assert.Equal(plain.ParameterCount() + own, withMtp.ParameterCount());
    }

    [Fact]
    public void MtpOffTrainingStepIsTheOrdinaryStep()
    {
        var (x, y) = (torch.tensor(new long[] { 1, 5, 9, 3, 7, 2, 4, 8 }).view(2, 4), torch.tensor(new long[] { 5, 9, 3, 7, 2, 4, 8, 1 }).view(2, 4));
        using var plain = Build(Config(0), 4);
        using var withMtp = Build(Config(1), 4);
        var opts = new TrainOptions { Steps = 3, WarmupSteps = 1, BatchSize = 2, SequenceLength = 4 };
        var a = new LmTrainer(plain, opts);
        var b = new LmTrainer(withMtp, opts with { MtpWeight = 0 });
        for (int i = 0; i < 2; i++)
        {
            var ma = a.TrainStep(x, y); var mb = b.TrainStep(x, y);
            Assert.Equal(ma.Loss, mb.Loss);
            Assert.Null(mb.MtpLosses);
        }
        var pb = withMtp.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var (name, p) in plain.named_parameters()) Assert.True(Same(p, pb[name]), name);
        var c = new LmTrainer(Build(Config(2), 4), opts);
        var mc = c.TrainStep(x, y);
        Assert.Equal(2, mc.MtpLosses!.Length);
        Assert.All(mc.MtpLosses, l => Assert.InRange(l, 0.5 * Math.Log(40), 2 * Math.Log(40)));   // near ln V at init
    }

    static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();

    static Tensor Rms(Tensor x, Tensor w, double eps) => x * torch.rsqrt(x.pow(2).mean([-1], keepdim: true) + eps) * w;

    [Fact]
    public void MtpLossEqualsAHandComposedComputation()
    {
        var cfg = Config(2);
        using var model = Build(cfg, 5);
        model.eval();
        using var noGrad = torch.no_grad();
        var gen = new Random(2);
        var all = torch.tensor(Enumerable.Range(0, 2 * 9).Select(_ => (long)gen.Next(3, 40)).ToArray()).view(2, 9);
        var ids = all.narrow(1, 0, 8); var targets = all.narrow(1, 1, 8);                        // [2, 8]
        var (_, mtpLogits) = model.ForwardWithMtp(ids);
        var depth = MultiTokenPrediction.DepthLosses(mtpLogits, targets);
        double lambda = 0.3;
        double combined = MultiTokenPrediction.Combine(depth, lambda).item<float>();

        // By hand: eq. 21 with explicit RMSNorm and matmul, eq. 22 the block, eq. 23 norm + shared head, eq. 24 −log p.
        var prev = model.ForwardHidden(ids);                                                     // h^0 [2, 8, D]
        double sum = 0;
        foreach (var m in model.MtpModules)
        {
            int k = m.Depth; long len = 8 - k;
            var p = m.named_parameters().ToDictionary(t => t.name, t => t.parameter);
            var emb = model.Embedding.weight!.index_select(0, ids.narrow(1, k, len).reshape(-1)).view(2, len, -1);  // Emb(t_{i+k})
            var joined = torch.cat([Rms(emb, p["enorm.weight"], cfg.RmsNormEps), Rms(prev.narrow(1, 0, len), p["hnorm.weight"], cfg.RmsNormEps)], -1);
            var hIn = torch.matmul(joined, p["eh_proj.weight"].t());
            var ctx = new AttentionContext
            {
                Positions = torch.arange(len).unsqueeze(0).expand(2, len),
                Mask = AttentionContext.BuildMask(torch.ones(2, len, dtype: ScalarType.Bool), 0, len),
            };
            var hk = m.Block.forward(hIn, ctx);
            var logits = torch.matmul(Rms(hk, p["shared_head.norm.weight"], cfg.RmsNormEps), model.HeadWeight.t()); // [2, len, V]
            var logp = logits.log_softmax(-1).gather(-1, targets.narrow(1, k, len).unsqueeze(-1));                // log P^k[t_{i+k+1}]
            double lk = -logp.mean().item<float>();
            Assert.Equal(lk, depth[k - 1].item<float>(), 4);
            sum += lk;
            prev = hk;
        }
        Assert.Equal(lambda / 2 * sum, combined, 4);
    }

    [Fact]
    public void MtpLossSendsGradientToTheSharedEmbeddingAndHead()
    {
        using var model = Build(Config(1), 6);
        var ids = torch.tensor(new long[] { 1, 5, 9, 3, 7, 2 }).unsqueeze(0);
        var targets = torch.tensor(new long[] { 5, 9, 3, 7, 2, 4 }).unsqueeze(0);
        var (_, mtpLogits) = model.ForwardWithMtp(ids);
        MultiTokenPrediction.Combine(MultiTokenPrediction.DepthLosses(mtpLogits, targets), 0.3).backward();   // L_MTP only
        Assert.True(model.Embedding.weight!.grad is { } ge && ge.abs().sum().item<float>() > 0);
        Assert.True(model.HeadWeight.grad is { } gh && gh.abs().sum().item<float>() > 0);
        var p = model.MtpModules[0].named_parameters().ToDictionary(t => t.name, t => t.parameter);
        Assert.True(p["eh_proj.weight"].grad!.abs().sum().item<float>() > 0);
        // Token 9 is read only as Emb(t_{i+1}) by the MTP module at i = 1 … and as main input; token 4 only as a target.
        Assert.True(model.Embedding.weight!.grad![9].abs().sum().item<float>() > 0);
    }

    [Fact]
    public void SaveLoadRoundTripsAndStrictLoadNamesMtpKeys()
    {
        var cfg = Config(2);
        using var a = Build(cfg, 7);
        var file = Path.Combine(_dir, "model.safetensors");
        StateDict.Save(a, file);
        using var b = Build(cfg, 8);
        var report = StateDict.Load(b, file);
        Assert.True(report.IsExact);
        var ids = torch.tensor(new long[] { 1, 5, 9, 3, 7, 2 }).unsqueeze(0);
        using (torch.no_grad())
        {
            var (la, ma) = a.ForwardWithMtp(ids); var (lb, mb) = b.ForwardWithMtp(ids);
            Assert.True(Same(la, lb));
            for (int k = 0; k < 2; k++) Assert.True(Same(ma[k], mb[k]));
        }
        var tensors = SafeTensorsFile.Open(file).Names.ToDictionary(n => n, n => StateDict.Entries(a).First(e => e.Name == n).Tensor.detach().clone());

        var missing = new Dictionary<string, Tensor>(tensors);
        missing.Remove("model.layers.3.enorm.weight");
        var e1 = Assert.Throws<WhaleFormatException>(() => StateDict.Load(b, missing));
        Assert.Contains("model.layers.3.enorm.weight", e1.Message);
        missing = new Dictionary<string, Tensor>(tensors);
        missing.Remove("model.layers.2.shared_head.head.weight");
        Assert.Contains("model.layers.2.shared_head.head.weight", Assert.Throws<WhaleFormatException>(() => StateDict.Load(b, missing)).Message);

        // A copy of a shared tensor that differs from the main one: strict error naming it; lenient keeps the main.
        var differing = new Dictionary<string, Tensor>(tensors) { ["model.layers.3.embed_tokens.weight"] = tensors["model.embed_tokens.weight"] + 1 };
        var e2 = Assert.Throws<WhaleFormatException>(() => StateDict.Load(b, differing));
        Assert.Contains("model.layers.3.embed_tokens.weight", e2.Message);
        var lenient = StateDict.Load(b, differing, strict: false);
        Assert.Contains("model.layers.3.embed_tokens.weight", lenient.Unexpected);
        Assert.True(Same(b.Embedding.weight!, a.Embedding.weight!));
    }

    [Theory]
    [InlineData("mla", MlaMode.Absorbed)]
    [InlineData("mla", MlaMode.Naive)]
    [InlineData("gqa", MlaMode.Auto)]
    public void CacheRollbackThenDecodeEqualsAFreshRun(string kind, MlaMode mode)
    {
        using var model = Build(Config(0, kind), 9);
        model.eval(); model.SetMlaMode(mode);
        using var noGrad = torch.no_grad();
        long[] prefix = [1, 5, 9, 3], rejected = [11, 12, 13], accepted = [7, 2];
        using var cache = model.CreateCache(1, 16);
        model.Forward(torch.tensor(prefix).unsqueeze(0), cache: cache);
        model.Forward(torch.tensor(rejected).unsqueeze(0), cache: cache);
        cache.Truncate(prefix.Length);
        Assert.Equal(prefix.Length, cache.Length);
        var cont = model.Forward(torch.tensor(accepted).unsqueeze(0), cache: cache);                   // [1, 2, V]
        var fresh = model.Forward(torch.tensor(prefix.Concat(accepted).ToArray()).unsqueeze(0));       // [1, 6, V]
        Assert.True((cont - fresh.narrow(1, prefix.Length, 2)).abs().max().item<float>() < 1e-5);
        Assert.Throws<WhaleArgumentException>(() => cache.Truncate(99));
    }

    static int[] Greedy(DeepSeekLM model, int[] prompt, int n, int[]? stops = null)
        => Generation.Generate(model, [prompt], new SamplingOptions { MaxNewTokens = n, StopTokens = stops ?? [] }).Completions[0];

    [Theory]
    [InlineData("mla", 1)]
    [InlineData("mla", 2)]
    [InlineData("gqa", 2)]
    public void SpeculativeEqualsGreedyOnRandomModels(string kind, int depth)
    {
        foreach (int seed in new[] { 10, 11 })
        {
            using var model = Build(Config(depth, kind), seed);
            foreach (var prompt in new[] { new[] { 1 }, new[] { 1, 5, 9, 3 }, new[] { 1, 20, 21, 22, 23, 24, 25 } })
            {
                var opts = new SamplingOptions { MaxNewTokens = 12, StopTokens = [] };
                var spec = SpeculativeDecoding.Generate(model, prompt, opts);
                Assert.Equal(Greedy(model, prompt, 12), spec.Tokens);
                Assert.InRange(spec.AcceptanceRate, 0, 1);
                Assert.InRange(spec.TokensPerForward, 1, depth + 1);
            }
        }
    }

    [Fact]
    public void OracleDraftIsAlwaysAcceptedAndWrongDraftNever()
    {
        using var model = Build(Config(0, "gqa"), 12);
        int[] prompt = [1, 5, 9];
        var reference = Greedy(model, prompt, 13);
        var opts = new SamplingOptions { MaxNewTokens = 13, StopTokens = [] };
        DraftFunc oracle = (seq, count) => reference.Skip(seq.Count - prompt.Length).Take(count).ToArray();
        var good = SpeculativeDecoding.Generate(model, prompt, opts, oracle, draftTokens: 3);
        Assert.Equal(reference, good.Tokens);
        Assert.Equal(1.0, good.AcceptanceRate);
        Assert.Equal(4, good.MainForwards);                                // prefill 1 token, then 3 rounds of 4 tokens
        DraftFunc wrong = (seq, count) => reference.Skip(seq.Count - prompt.Length).Take(count).Select(t => (t + 1) % 40).ToArray();
        var bad = SpeculativeDecoding.Generate(model, prompt, opts, wrong, draftTokens: 2);
        Assert.Equal(reference, bad.Tokens);
        Assert.Equal(0.0, bad.AcceptanceRate);
        Assert.Equal(13, bad.MainForwards);
        // Stop tokens end both the same way.
        int stop = reference[6];
        var stopped = SpeculativeDecoding.Generate(model, prompt, opts with { StopTokens = [stop] }, oracle, draftTokens: 3);
        Assert.Equal(Greedy(model, prompt, 13, [stop]), stopped.Tokens);
        Assert.True(stopped.Stopped);
    }

    [Fact]
    public void TrainedMtpDraftsAreAcceptedAndOutputEqualsGreedy()
    {
        // A periodic token stream: two tokens ahead are predictable, so a briefly trained MTP module drafts well.
        var cfg = ModelConfig.Tiny("mla", vocab: 16, hidden: 32, layers: 1, heads: 2) with { NumNextnPredictLayers = 1 };
        using var model = Build(cfg, 13);
        var pattern = new[] { 3, 7, 4, 9, 5, 11, 6 };
        var stream = new TokenWindowStream(Enumerable.Range(0, 400).Select(i => pattern[i % pattern.Length]).ToArray(), 8, 16, 1);
        var trainer = new LmTrainer(model, new TrainOptions { Steps = 60, BatchSize = 8, SequenceLength = 16, WarmupSteps = 5, LearningRate = 1e-2 });
        StepMetrics last = null!;
        for (int i = 0; i < 60; i++) { using var scope = torch.NewDisposeScope(); var (x, y) = stream.Next(CPU); last = trainer.TrainStep(x, y); }
        Assert.True(last.MtpLosses![0] < 0.5, $"MTP loss {last.MtpLosses[0]}");
        int[] prompt = [1, 3, 7, 4];
        var opts = new SamplingOptions { MaxNewTokens = 20, StopTokens = [] };
        var spec = SpeculativeDecoding.Generate(model, prompt, opts);
        Assert.Equal(Greedy(model, prompt, 20), spec.Tokens);
        Assert.True(spec.AcceptanceRate > 0.8, $"acceptance {spec.AcceptanceRate}");
        Assert.True(spec.TokensPerForward > 1.5, $"tokens/forward {spec.TokensPerForward}");
    }

    [Fact]
    public void BadInputsAreClearErrors()
    {
        using var plain = Build(Config(0), 1);
        Assert.Throws<WhaleArgumentException>(() => plain.ForwardWithMtp(torch.tensor(new long[] { 1, 2 }).unsqueeze(0)));
        Assert.Throws<WhaleArgumentException>(() => SpeculativeDecoding.Generate(plain, [1], new SamplingOptions()));
        using var mtp = Build(Config(2), 1);
        Assert.Throws<WhaleArgumentException>(() => mtp.ForwardWithMtp(torch.tensor(new long[] { 1, 2 }).unsqueeze(0)));   // T ≤ D
        Assert.Throws<WhaleArgumentException>(() => SpeculativeDecoding.Generate(mtp, [1], new SamplingOptions { Temperature = -1 }));
        Assert.Throws<WhaleArgumentException>(() => SpeculativeDecoding.Generate(mtp, [1], new SamplingOptions(), draftTokens: 3));
        Assert.Throws<WhaleArgumentException>(() => new TrainOptions { MtpWeight = -1 }.Validate());
    }
}
