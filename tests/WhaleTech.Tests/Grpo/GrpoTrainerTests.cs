using TorchSharp;
using WhaleTech.Grpo;
using WhaleTech.Model;
using static TorchSharp.torch;
using WhaleTech.Core;
using WhaleTech.Lab.Bench;

namespace WhaleTech.Tests.Grpo;

/// <summary>Tiny end-to-end runs of the trainer on CPU (1-layer, 32-wide policy; a few steps).</summary>
public class GrpoTrainerTests
{
    static GrpoOptions Tiny(int seed = 1) => new()
    {
        Task = "addition", Digits = 1, HeldOut = 8, Policy = new() { Hidden = 32, Layers = 1, Heads = 2 }, SftSteps = 0,
        PromptsPerStep = 2, NumGenerations = 4, MaxCompletionLength = 10, Seed = seed, Beta = 0.04, NumIterations = 2,
        MicroBatches = 2, EvalEvery = 1000, SampleEvery = 1000, CheckpointEvery = 1000, WarmupSteps = 0, LearningRate = 1e-3,
        Rewards = "accuracy:1,format:0.5,partial:0.2",
    };

    static readonly string[] Timing = ["step_time/generation", "step_time/scoring", "step_time/update", "step_time/total"];

    static List<SortedDictionary<string, double>> Run(GrpoOptions o, int steps, Action<GrpoTrainer>? atEnd = null)
    {
        var policy = PolicyModel.Create(PolicyModel.Config(o), o.Seed, torch.CPU);
        using var t = new GrpoTrainer(o, policy);
        var list = new List<SortedDictionary<string, double>>();
        for (int i = 0; i < steps; i++) list.Add(Strip(t.TrainStep()));
        atEnd?.Invoke(t);
        return list;
    }

    static SortedDictionary<string, double> Strip(SortedDictionary<string, double> m)
    {
        foreach (var k in Timing) m.Remove(k);
        return m;
    }

    [Fact]
    public void SameSeedGivesIdenticalMetrics()
    {
        var a = Run(Tiny(), 3);
        var b = Run(Tiny(), 3);
        for (int s = 0; s < 3; s++)
        {
            Assert.Equal(a[s].Keys, b[s].Keys);
            foreach (var (k, v) in a[s]) Assert.True(v.Equals(b[s][k]), $"step {s + 1} {k}: {v} vs {b[s][k]}");
        }
        foreach (var k in new[] { "reward", "reward_std", "rewards/accuracy/mean", "rewards/format/mean", "frac_reward_zero_std",
                                  "completions/mean_length", "completions/clipped_ratio", "entropy", "kl", "clip_ratio/low_mean", "clip_ratio/high_mean", "loss", "grad_norm" })
            Assert.Contains(k, a[0].Keys);
        var c = Run(Tiny(seed: 2), 1);
        Assert.NotEqual(a[0]["entropy"], c[0]["entropy"]);
    }

    [Theory]
    [InlineData(WhaleTech.Training.MomentPrecision.Fp32)]
    [InlineData(WhaleTech.Training.MomentPrecision.Bf16)]
    public void ResumeFromCheckpointContinuesExactly(WhaleTech.Training.MomentPrecision moments)
    {
        var dir = Path.Combine(Path.GetTempPath(), "whale-grpo-" + Guid.NewGuid().ToString("N")[..8]);
        try
        {
            var tiny = Tiny() with { OptimizerMoments = moments };
            var full = Run(tiny, 3);
            Run(tiny, 2, t => GrpoCheckpoint.Save(t, dir));
            var o = GrpoCheckpoint.ReadState(dir).Options;
            Assert.Equal(moments, o.OptimizerMoments);                         // travels through state.json
            var policy = PolicyModel.Create(PolicyModel.Config(o), 99, torch.CPU);      // different init: must be overwritten
            using var t = new GrpoTrainer(o, policy);
            GrpoCheckpoint.Restore(t, dir);
            Assert.Equal(2, t.Step);
            Assert.Equal(moments, t.Optimizer.Moments);
            var third = Strip(t.TrainStep());
            foreach (var (k, v) in full[2]) Assert.True(v.Equals(third[k]), $"{k}: {v} vs {third[k]}");
        }
        finally { if (Directory.Exists(dir)) Directory.Delete(dir, true); }
    }

    [Fact]
    public void BetaZeroKeepsNoReferenceAndDynamicSamplingReportsKeptGroups()
    {
        var o = Tiny() with { Beta = 0, DynamicSampling = true, MaxSamplingRounds = 2, NumIterations = 1, MicroBatches = 1, MaskTruncatedCompletions = true };
        var policy = PolicyModel.Create(PolicyModel.Config(o), 1, torch.CPU);
        using var t = new GrpoTrainer(o, policy);
        Assert.Null(t.Reference);
        var m = t.TrainStep();
        Assert.DoesNotContain("kl", m.Keys);
        Assert.InRange(m["dynamic_sampling/rounds"], 1, 2);
        Assert.True(double.IsFinite(m["loss"]));
    }

    [Fact]
    public void OneStepRaisesTheLogProbOfRewardedCompletions()
    {
        // Sign/alignment check of the whole step: after a short SFT the policy partially solves 1-digit addition;
        // one GRPO step (μ = 1, β = 0, accuracy-only reward, large lr, τ = 0.8) must move log π(o_i | q) in the
        // direction of Â_i: Σ_i Â_i Δlog π(o_i) > 0, and rewarded completions gain more than unrewarded ones.
        var o = Tiny() with
        {
            Rewards = "accuracy:1", Beta = 0, NumIterations = 1, MicroBatches = 1, PromptsPerStep = 8, NumGenerations = 8,
            SftSteps = 100, SftBatch = 32, MaxCompletionLength = 0, LearningRate = 3e-3, Temperature = 0.8, MaxGradNorm = 1e9,
        };
        var policy = PolicyModel.Create(PolicyModel.Config(o), o.Seed, torch.CPU);
        var task = o.CreateTask();
        PolicyModel.Sft(policy, task, o, task.HeldOut(o.Seed, o.HeldOut).Select(p => p.Question).ToHashSet());
        using var before = PolicyModel.Clone(policy);
        using var t = new GrpoTrainer(o, policy);
        t.TrainStep();
        var groups = t.LastGroups.Where(g => g.Rewards.Distinct().Count() > 1).ToList();
        Assert.NotEmpty(groups);                                              // some groups carry a signal
        using var batch = PackedBatch.Create(groups.SelectMany(g => Enumerable.Repeat(g.Prompt, g.Completions.Length)).ToList(),
            groups.SelectMany(g => g.Completions).ToList(), torch.CPU);
        using var noGrad = torch.no_grad();
        double[] SeqLogp(DeepSeekLM m) => (batch.TokenLogProbs(m, temperature: o.Temperature).LogProbs * batch.Mask).sum(1).data<float>().Select(x => (double)x).ToArray();
        var (lp0, lp1) = (SeqLogp(before), SeqLogp(policy));
        var rewards = groups.SelectMany(g => g.Rewards).ToArray();
        var adv = groups.SelectMany(g => g.Rewards.Select(r => r - g.Rewards.Average())).ToArray();
        double dot = adv.Select((a, i) => a * (lp1[i] - lp0[i])).Sum();
        Assert.True(dot > 0, $"Σ Â Δlogπ = {dot}");
        double Gain(bool rewarded) => Enumerable.Range(0, rewards.Length).Where(i => rewards[i] > 0 == rewarded).Average(i => lp1[i] - lp0[i]);
        Assert.True(Gain(true) > Gain(false), $"rewarded Δlogπ {Gain(true)} vs unrewarded {Gain(false)}");
    }

    [Fact]
    public void RolloutStreamsDependOnlyOnTheirKey()
    {
        var cfg = ModelConfig.Tiny("mla", PolicyModel.Tokenizer().VocabSize, 32, 1, 2);
        var model = PolicyModel.Create(cfg, 3, torch.CPU);
        var tok = PolicyModel.Tokenizer();
        int[] p1 = [CharTokenizer.Bos, .. tok.Encode("12+3=")], p2 = [CharTokenizer.Bos, .. tok.Encode("4+5=")];
        ulong k1 = Streams.SampleKey(1, 0, 0, 0), k2 = Streams.SampleKey(1, 0, 1, 0);
        var s = new RolloutSampling(12, Temperature: 1.0);
        var both = Rollout.Generate(model, [p1, p2], [k1, k2], s);
        var alone = Rollout.Generate(model, [p2], [k2], s);
        Assert.Equal(alone.Completions[0], both.Completions[1]);             // same stream, alone or batched
        var other = Rollout.Generate(model, [p2, p2, p2], [Streams.SampleKey(1, 0, 1, 1), Streams.SampleKey(1, 0, 1, 2), Streams.SampleKey(1, 0, 1, 3)], s);
        Assert.Contains(other.Completions, c => !c.SequenceEqual(alone.Completions[0]));
    }

    [Fact]
    public void PackedLogProbsScoreWhatTheCachedRolloutGenerated()
    {
        // Greedy tokens from the KV-cache rollout must be the argmax of the packed full forward used by the loss
        // (same positions, masks and left padding), i.e. the loss optimises the distribution that sampled.
        var o = Tiny();
        var model = PolicyModel.Create(PolicyModel.Config(o), 5, torch.CPU);
        var tok = PolicyModel.Tokenizer();
        List<int[]> prompts = [[CharTokenizer.Bos, .. tok.Encode("12+3=")], [CharTokenizer.Bos, .. tok.Encode("4+5=")], [CharTokenizer.Bos, .. tok.Encode("100+99=")]];
        var gen = Rollout.Generate(model, prompts, [0UL, 0UL, 0UL], new RolloutSampling(9, Temperature: 0));
        using var batch = PackedBatch.Create(prompts, gen.Completions, torch.CPU);
        using var noGrad = torch.no_grad();
        var logits = model.Forward(batch.Ids, batch.Positions, null, batch.Valid).narrow(1, batch.PromptLength - 1, batch.CompletionLength);
        var arg = logits.argmax(-1);
        for (int b = 0; b < 3; b++)
            for (int j = 0; j < gen.Completions[b].Length; j++)
                Assert.Equal(gen.Completions[b][j], arg[b, j].item<long>());
    }

    [Fact]
    public void GumbelMaxSamplerMatchesTheDistribution()
    {
        // Gumbel-max with the counter-based noise samples softmax(logits/τ): check frequencies over 4000 keys.
        var logits = torch.tensor(new float[] { 1.0f, 0.0f, -1.0f, 2.0f }, [1, 4]);
        var p = logits.softmax(-1).data<float>().ToArray();
        var counts = new int[4];
        int n = 4000;
        for (int i = 0; i < n; i++)
        {
            ulong key = Streams.SampleKey(0, 0, i, 0);
            double best = double.NegativeInfinity; int arg = 0;
            for (int v = 0; v < 4; v++)
            {
                double g = Math.Log(p[v]) - Math.Log(-Math.Log(Streams.Uniform(key, 0, v)));
                if (g > best) { best = g; arg = v; }
            }
            counts[arg]++;
        }
        for (int v = 0; v < 4; v++) Assert.InRange(counts[v] / (double)n, p[v] - 4 * Math.Sqrt(p[v] * (1 - p[v]) / n), p[v] + 4 * Math.Sqrt(p[v] * (1 - p[v]) / n));
    }

    [Fact]
    public void CliRejectsBadOptionsWithExitCode2()
    {
        Assert.Throws<WhaleTech.Runtime.WhaleArgumentException>(() => (Tiny() with { Task = "poetry" }).Validate());
        Assert.Throws<WhaleTech.Runtime.WhaleArgumentException>(() => (Tiny() with { NumGenerations = 1 }).Validate());
        Assert.Throws<WhaleTech.Runtime.WhaleArgumentException>(() => LossAggregators.Get("ppo"));
        Assert.Equal("dr_grpo", LossAggregators.Get("dr_grpo").Name);
        Assert.Throws<WhaleTech.Runtime.WhaleArgumentException>(() => (Tiny() with { LossType = "ppo" }).Validate());
        Assert.Throws<WhaleTech.Runtime.WhaleArgumentException>(() => (Tiny() with { Task = "countdown", ReverseAnswer = true }).Validate());
        Assert.Throws<WhaleTech.Runtime.WhaleArgumentException>(() => (Tiny() with { SftTargetAccuracy = 1.5 }).Validate());
        Assert.Throws<WhaleTech.Runtime.WhaleArgumentException>(() => (Tiny() with { MinLrRatio = -0.1 }).Validate());
    }

    [Fact]
    public void LearningRateWarmsUpThenStaysOrDecaysByCosine()
    {
        var o = Tiny() with { LearningRate = 1e-3, WarmupSteps = 4, Steps = 104, MinLrRatio = 0.1 };
        Assert.Equal(0.25e-3, o.LearningRateAt(0), 15);
        Assert.Equal(1e-3, o.LearningRateAt(4), 15);
        Assert.Equal(1e-3, o.LearningRateAt(100), 15);                                 // constant (default)
        var c = o with { LrScheduler = LrSchedulerType.Cosine };
        Assert.Equal(1e-3, c.LearningRateAt(4), 15);
        Assert.Equal(0.55e-3, c.LearningRateAt(54), 12);                                // halfway: floor + ½(peak − floor)
        Assert.Equal(0.1e-3, c.LearningRateAt(104), 15);
        Assert.True(c.LearningRateAt(30) > c.LearningRateAt(31));
    }

    [Fact]
    public void SftStopsWhenValidationAccuracyReachesTheTarget()
    {
        // 1-digit addition with the tiny policy: run SFT once without a target and once with a target of 30 %; the
        // second must stop at the first check at or above 30 % and never earlier.
        var o = Tiny() with { SftSteps = 240, SftBatch = 32, SftLearningRate = 3e-3, SftEvalEvery = 20, HeldOut = 40 };
        var task = o.CreateTask();
        var held = task.HeldOut(o.Seed, o.HeldOut).Select(p => p.Question).ToHashSet();
        var checks = new List<(int Step, double Accuracy)>();
        using var policy = PolicyModel.Create(PolicyModel.Config(o), o.Seed, torch.CPU);
        var losses = PolicyModel.Sft(policy, task, o with { SftTargetAccuracy = 0.3 }, held, validated: (s, a) => checks.Add((s, a)));
        Assert.NotEmpty(checks);
        Assert.Equal(checks[^1].Step, losses.Count);
        Assert.All(checks.SkipLast(1), c => Assert.True(c.Accuracy < 0.3, $"step {c.Step}: {c.Accuracy}"));
        Assert.True(checks[^1].Accuracy >= 0.3 || losses.Count == o.SftSteps, $"stopped at {losses.Count} with {checks[^1].Accuracy}");
        Assert.True(losses.Count < o.SftSteps, $"the tiny policy should pass 30 % within {o.SftSteps} steps (last check {checks[^1].Accuracy})");
        Assert.All(checks, c => Assert.Equal(0, c.Step % o.SftEvalEvery));
    }

    [Fact]
    public void ANonFinitePolicyIsSkippedOrStoppedNeverSilentlyTrained()
    {
        // Issue 9: a NaN in the policy must not hang the rollout, crash natively or quietly update the other weights.
        var o = Tiny() with { Beta = 0, NumIterations = 1, MicroBatches = 1, DynamicSampling = false };
        var policy = PolicyModel.Create(PolicyModel.Config(o), 1, torch.CPU);
        using var t = new GrpoTrainer(o, policy);
        var victim = policy.named_parameters().First(p => p.name.EndsWith("o_proj.weight")).parameter;
        using (torch.no_grad()) victim[0, 0] = float.NaN;
        var before = policy.named_parameters().Where(p => p.name != "model.layers.0.self_attn.o_proj.weight")
                           .Select(p => (p.name, p.parameter.detach().clone())).ToList();
        SortedDictionary<string, double>? m = null;
        var error = Record.Exception(() => m = t.TrainStep());
        if (error is null)
        {
            Assert.True(m!["nonfinite_skipped"] > 0 || m["loss"] == 0, "a NaN policy must skip its update");
            foreach (var (name, p) in before)
                Assert.True(policy.get_parameter(name)!.equal(p).all().item<bool>(), $"{name} changed in a skipped step");
        }
        else Assert.IsAssignableFrom<WhaleTech.Runtime.WhaleException>(error);
    }

    [Fact]
    public void AMoePolicyTrainsAndItsRouterBiasIsBalancedAfterEachStep()
    {
        var o = Tiny() with { Beta = 0, NumIterations = 1, MicroBatches = 1 };
        o = o with { Policy = o.Policy with { MoeExperts = 4, MoeTopK = 2, Hidden = 32 } };
        var policy = PolicyModel.Create(PolicyModel.Config(o), 1, torch.CPU);
        var layers = WhaleTech.Moe.MoeLayers.Find(policy);
        Assert.Equal(o.Policy.Layers, layers.Count);
        using var t = new GrpoTrainer(o, policy);
        for (int i = 0; i < 2; i++) t.TrainStep();
        // The sign rule moves every bias by exactly ±γ or 0 per step: after 2 steps |b| ≤ 2γ, and it did move.
        var bias = layers[0].gate.Bias;
        Assert.True(bias.abs().max().item<float>() <= 2e-3f + 1e-7f);
        Assert.True(bias.abs().sum().item<float>() > 0, "the loss-free bias must be updated after GRPO steps");
        Assert.Throws<WhaleTech.Runtime.WhaleArgumentException>(() => (o with { Policy = o.Policy with { MoeTopK = 5 } }).Validate());
    }
}
