// One GRPO iteration (DeepSeekMath Algorithm 1, with the variants of GrpoLoss.cs):
//   1. sample a batch of P prompts (stateless stream keyed by (seed, step, slot))
//   2. π_old ← π_θ; generate G completions per prompt in ONE batched rollout with the KV cache
//   3. score them with the weighted reward functions; (dynamic sampling: drop groups whose rewards are all
//      equal and sample more prompts, up to max_sampling_rounds rounds)
//   4. compute group advantages Â_i; mask truncated completions if asked
//      (log-probs here and below are of softmax(logits / τ), the distribution the rollout sampled, as in TRL)
//   5. for μ iterations: per micro-batch, loss = aggregate(−min(ρÂ, clip(ρ)Â) + β·KL), backward; clip the
//      gradient norm; skip the update if it is not finite; AdamW step
//   6. every ref_model_sync_steps steps: π_ref ← π_θ
// Metrics use TRL's GRPOTrainer names (reward, reward_std, rewards/<fn>/mean, frac_reward_zero_std,
// completions/mean_length, completions/clipped_ratio, entropy, kl, clip_ratio/{low_mean,low_min,high_mean,high_max,
// region_mean}); reward_std and clip_ratio/* are computed as TRL computes them (GrpoMetrics.cs), the mean per-group
// std is reward_group_std/mean. entropy and kl stay token means over all micro-batches and iterations of the step
// (TRL: per micro-batch, then averaged; the same number with one micro-batch and num_iterations 1).
//
// Shapes: P prompts, G samples per prompt, B = P·G sequences, Tc completion tokens.
using System.Diagnostics;
using TorchSharp;
using WhaleTech.Model;
using static TorchSharp.torch;
using WhaleTech.Core;

namespace WhaleTech.Grpo;

/// <summary>One prompt's group: the problem, its G completions (tokens and text) and their rewards.</summary>
public sealed record GroupSample(int Slot, MathProblem Problem, int[] Prompt, int[][] Completions, string[] Texts, bool[] Stopped, double[] Rewards);

public sealed class GrpoTrainer : IDisposable
{
    public GrpoOptions Options { get; }
    public DeepSeekLM Policy { get; }
    public DeepSeekLM? Reference { get; private set; }
    public MathTask Task { get; }
    public IReadOnlyList<WeightedReward> RewardFunctions { get; }
    public IReadOnlyList<MathProblem> HeldOut { get; }
    public int MaxCompletionLength { get; }
    /// <summary>Steps completed so far.</summary>
    public int Step { get; internal set; }
    public long NumTokens { get; internal set; }
    internal Training.AdamWOptimizer Optimizer { get; }
    /// <summary>The groups of the last step (for sample printing).</summary>
    public IReadOnlyList<GroupSample> LastGroups { get; private set; } = [];

    readonly CharTokenizer _tok = PolicyModel.Tokenizer();
    readonly HashSet<string> _heldOutQuestions;
    readonly Device _device;

    public GrpoTrainer(GrpoOptions options, DeepSeekLM policy)
    {
        Options = options.Validate();
        Policy = policy;
        _device = policy.Embedding.weight!.device;
        Task = options.CreateTask();
        RewardFunctions = Rewards.Parse(options.Rewards, Task);
        HeldOut = Task.HeldOut(options.Seed, options.HeldOut);
        _heldOutQuestions = HeldOut.Select(p => p.Question).ToHashSet();
        MaxCompletionLength = options.MaxCompletionLength > 0 ? options.MaxCompletionLength : PolicyModel.DefaultMaxCompletionLength(HeldOut);
        Reference = options.Beta > 0 ? PolicyModel.Clone(policy) : null;          // β = 0: no reference kept
        Optimizer = new Training.AdamWOptimizer(policy.parameters(), options.LearningRate, weightDecay: 0.0, beta1: 0.9, beta2: 0.99, moments: options.OptimizerMoments);
        _stepper = new Training.OptimizerStepper(Optimizer, policy.parameters(), options.MaxGradNorm)
            .AttachBalancer(PolicyModel.Balancer(policy));                          // MoE policy: loss-free bias updates
    }

    readonly Training.OptimizerStepper _stepper;

    public IReadOnlySet<string> HeldOutQuestions => _heldOutQuestions;

    /// <summary>Runs one GRPO step and returns its metrics (TRL names; times in seconds):
    /// rollout → score (inside the rollout rounds, for dynamic sampling) → reward metrics → advantages → update.</summary>
    public SortedDictionary<string, double> TrainStep()
    {
        var o = Options;
        int step = Step;                                                 // 0-based index of this step
        var m = new SortedDictionary<string, double>();
        var total = Stopwatch.StartNew();

        if (Reference is not null && o.RefModelSyncSteps > 0 && step > 0 && step % o.RefModelSyncSteps == 0)
            PolicyModel.CopyWeights(Policy, Reference);

        var rollout = RolloutAndScore(step, m);                                               // 1–3
        LastGroups = rollout.Kept;
        RewardMetrics(rollout, m);
        var upd = Stopwatch.StartNew();
        using (var scope = torch.NewDisposeScope())
        {
            var (batch, adv, mask) = Advantages(rollout.Kept);                                // 4
            using (batch) Update(step, batch, adv, mask, m);                                   // 5
        }
        m["num_tokens"] = NumTokens;
        m["step_time/generation"] = rollout.GenerationSeconds;
        m["step_time/scoring"] = rollout.ScoringSeconds;
        m["step_time/update"] = upd.Elapsed.TotalSeconds;
        m["step_time/total"] = total.Elapsed.TotalSeconds;
        Step++;
        m["step"] = Step;
        return m;
    }

    /// <summary>What one step's rollout produced: the groups kept for the update, every group generated, the rounds
    /// of dynamic sampling, and where the time went.</summary>
    sealed record RolloutResult(List<GroupSample> Kept, List<GroupSample> All, int Rounds, double GenerationSeconds, double ScoringSeconds);

    /// <summary>Steps 1–3: sample prompts, roll out G completions each, score them; dynamic sampling refills the groups
    /// whose rewards are all equal, for up to max_sampling_rounds rounds. Adds rewards/&lt;fn&gt;/sum to <paramref name="m"/>.</summary>
    RolloutResult RolloutAndScore(int step, SortedDictionary<string, double> m)
    {
        var o = Options;
        double genTime = 0, scoreTime = 0;
        var kept = new List<GroupSample>();
        var all = new List<GroupSample>();
        int rounds = 0;
        for (int round = 0; round < (o.DynamicSampling ? o.MaxSamplingRounds : 1) && kept.Count < o.PromptsPerStep; round++)
        {
            rounds++;
            int need = o.PromptsPerStep - kept.Count;
            var sw = Stopwatch.StartNew();
            var slots = Enumerable.Range(round * o.PromptsPerStep, need).ToArray();
            var problems = slots.Select(s => Task.Train(o.Seed, step, s, _heldOutQuestions)).ToArray();
            var prompts = new List<int[]>(); var keys = new List<ulong>();
            for (int i = 0; i < need; i++)
                for (int g = 0; g < o.NumGenerations; g++)
                {
                    prompts.Add(PolicyModel.PromptIds(_tok, problems[i]));
                    keys.Add(Streams.SampleKey(o.Seed, step, slots[i], g));
                }
            var gen = Rollout.Generate(Policy, prompts, keys, new RolloutSampling(MaxCompletionLength, o.Temperature, o.TopK, o.TopP));
            genTime += sw.Elapsed.TotalSeconds;
            sw.Restart();
            var texts = gen.Completions.Select(c => _tok.Decode(c)).ToArray();
            var probsRep = problems.SelectMany(p => Enumerable.Repeat(p, o.NumGenerations)).ToArray();
            var (rewards, perFn) = Rewards.Score(RewardFunctions, probsRep, texts);
            foreach (var (name, vals) in perFn) AddTo(m, $"rewards/{name}/sum", vals.Sum());
            for (int i = 0; i < need; i++)
            {
                var range = new Range(i * o.NumGenerations, (i + 1) * o.NumGenerations);
                var group = new GroupSample(slots[i], problems[i], prompts[i * o.NumGenerations], gen.Completions[range], texts[range], gen.Stopped[range], rewards[range]);
                all.Add(group);
                bool flat = group.Rewards.All(r => r == group.Rewards[0]);
                if (!o.DynamicSampling || !flat) kept.Add(group);
            }
            scoreTime += sw.Elapsed.TotalSeconds;
        }
        if (kept.Count == 0) kept.AddRange(all.Take(o.PromptsPerStep));                        // nothing to learn from: update anyway (KL only)
        return new RolloutResult(kept, all, rounds, genTime, scoreTime);
    }

    /// <summary>Reward and completion metrics over everything generated this step (TRL's names).</summary>
    void RewardMetrics(RolloutResult r, SortedDictionary<string, double> m)
    {
        var o = Options;
        var all = r.All;
        var allRewards = all.SelectMany(g => g.Rewards).ToArray();
        int nGen = allRewards.Length;
        m["reward"] = allRewards.Average();
        m["reward_std"] = GrpoMetrics.RewardStd(all.Select(g => g.Rewards));                     // TRL: std of the flat batch
        m["reward_group_std/mean"] = GrpoMetrics.GroupStdMean(all.Select(g => g.Rewards), o.Bessel);
        m["frac_reward_zero_std"] = all.Count(g => g.Rewards.All(x => x == g.Rewards[0])) / (double)all.Count;
        foreach (var fn in RewardFunctions) { m[$"rewards/{fn.Name}/mean"] = m[$"rewards/{fn.Name}/sum"] / nGen; m.Remove($"rewards/{fn.Name}/sum"); }
        var lengths = all.SelectMany(g => g.Completions.Select(c => (double)c.Length)).ToArray();
        m["completions/mean_length"] = lengths.Average();
        m["completions/max_length"] = lengths.Max();
        m["completions/clipped_ratio"] = all.SelectMany(g => g.Stopped).Count(s => !s) / (double)nGen;
        if (o.DynamicSampling) { m["dynamic_sampling/rounds"] = r.Rounds; m["dynamic_sampling/kept_groups"] = r.Kept.Count; }
    }

    /// <summary>Step 4: group advantages [B], the packed batch and the loss mask [B, Tc] (truncated completions masked
    /// out when asked). Tensors live in the caller's dispose scope.</summary>
    (PackedBatch Batch, Tensor Advantages, Tensor Mask) Advantages(List<GroupSample> kept)
    {
        var o = Options;
        int P = kept.Count, G = o.NumGenerations, B = P * G;
        var rewardT = torch.tensor(kept.SelectMany(g => g.Rewards).ToArray(), [P, G], dtype: ScalarType.Float32);   // [P, G]
        var adv = GrpoLoss.Advantages(rewardT, o.Advantage, o.Bessel, o.AdvantageEps).reshape(B).to(_device);       // [B]
        var batch = PackedBatch.Create(kept.SelectMany(g => Enumerable.Repeat(g.Prompt, G)).ToList(),
            kept.SelectMany(g => g.Completions).ToList(), _device);
        var mask = batch.Mask;                                                                                      // [B, Tc]
        if (o.MaskTruncatedCompletions)
        {
            var stopped = torch.tensor(kept.SelectMany(g => g.Stopped).Select(s => s ? 1f : 0f).ToArray(), [B, 1], device: _device);
            mask = mask * stopped;
        }
        return (batch, adv, mask);
    }

    /// <summary>Step 5: μ iterations of the clipped objective over micro-batches (gradient accumulation), each ending in
    /// one shared optimizer step; writes loss, grad_norm, learning_rate, entropy, clip ratios and kl to <paramref name="m"/>.</summary>
    void Update(int step, PackedBatch batch, Tensor adv, Tensor mask, SortedDictionary<string, double> m)
    {
        var o = Options;
        long B = batch.Mask.shape[0];
        double totalTokens = mask.sum().item<float>();
        NumTokens += (long)batch.Mask.sum().item<float>();

        int micro = (int)Math.Min(o.MicroBatches, B);
        var bounds = Enumerable.Range(0, micro + 1).Select(i => (long)Math.Round(i * (double)B / micro)).ToArray();
        // π_old and π_ref log-probs, fixed for the μ iterations.
        var oldLogp = new Tensor?[micro]; var refLogp = new Tensor?[micro];
        using (torch.no_grad())
            for (int k = 0; k < micro; k++)
            {
                using var mb = batch.Rows(bounds[k], bounds[k + 1] - bounds[k]);
                if (o.NumIterations > 1) oldLogp[k] = mb.TokenLogProbs(Policy, temperature: o.Temperature).LogProbs;
                if (Reference is not null) refLogp[k] = mb.TokenLogProbs(Reference, temperature: o.Temperature).LogProbs;
            }

        double lr = o.LearningRateAt(step);
        _stepper.SetLearningRate(lr);
        var lossType = o.Loss;
        double lossSum = 0, klSum = 0, entSum = 0, gradNormSum = 0, tokSum = 0;
        var clip = new ClipRatioLog();                                                      // TRL: one entry per micro-batch and iteration
        int skipped = 0;
        Policy.train();
        for (int it = 0; it < o.NumIterations; it++)
        {
            _stepper.ZeroGrad();
            double iterLoss = 0;
            for (int k = 0; k < micro; k++)
            {
                using var inner = torch.NewDisposeScope();
                long start = bounds[k], rows = bounds[k + 1] - bounds[k];
                using var mb = batch.Rows(start, rows);
                var mbMask = mask.narrow(0, start, rows);                                                            // [b, Tc]
                var (logp, ent) = mb.TokenLogProbs(Policy, withEntropy: true, temperature: o.Temperature);          // [b, Tc]
                var old = oldLogp[k] ?? logp.detach();
                var (perTok, low, high, kl) = GrpoLoss.PerTokenLoss(logp, old, refLogp[k], adv.narrow(0, start, rows),
                    o.Epsilon, o.EffectiveEpsilonHigh, o.Beta, o.KlEstimator);
                var loss = GrpoLoss.Aggregate(perTok, mbMask, lossType, MaxCompletionLength, totalTokens);
                // Gradient accumulation: the aggregation's factor makes the micro-batch losses add up to the full-batch
                // loss (exact for grpo/dr_grpo/dapo; bnpo keeps its per-micro-batch token normaliser, as in TRL).
                double scale = lossType.MicroBatchScale(rows, B, micro);
                (loss * scale).backward();
                iterLoss += loss.item<float>() * scale;
                double tk = mbMask.sum().item<float>();
                tokSum += tk;
                entSum += (ent! * mbMask).sum().item<float>();
                clip.Add(low, high, mbMask);
                if (kl is not null) klSum += (kl * mbMask).sum().item<float>();
            }
            var outcome = _stepper.Finish(step, iterLoss);                      // clip, then step or skip (balancer attached)
            if (outcome.Skipped) skipped++;
            lossSum += iterLoss; gradNormSum += outcome.GradNorm;
        }
        tokSum = Math.Max(1, tokSum);
        m["loss"] = lossSum / o.NumIterations;
        m["grad_norm"] = gradNormSum / o.NumIterations;
        m["learning_rate"] = lr;
        m["entropy"] = entSum / tokSum;
        clip.WriteTo(m);
        if (Reference is not null) m["kl"] = klSum / tokSum;
        m["nonfinite_skipped"] = skipped;
    }

    /// <summary>Held-out accuracy and format rate (greedy).</summary>
    public (double Accuracy, double Format) Evaluate()
    {
        var (acc, fmt, _) = PolicyModel.Evaluate(Policy, Task, HeldOut, MaxCompletionLength);
        return (acc, fmt);
    }

    static void AddTo(SortedDictionary<string, double> m, string k, double v) => m[k] = m.GetValueOrDefault(k) + v;

    public void Dispose()
    {
        Optimizer.Dispose();
        Reference?.Dispose();
    }
}
