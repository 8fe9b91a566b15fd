using TorchSharp;
using WhaleTech.Attention;
using WhaleTech.Model;
using WhaleTech.Runtime;
using WhaleTech.Training;
using static TorchSharp.torch;
using WhaleTech.Core;

namespace WhaleTech.Tests.Model;

/// <summary>Batched speculative decoding (greedy and sampled), speculative sampling's exactness, and MTP eval losses.</summary>
public class SpeculativeBatchSamplingTests
{
    public SpeculativeBatchSamplingTests() => Backend.Initialize();

    static ModelConfig Config(int depth, string kind = "mla") => CachedDecodeTests.Config(kind, qLora: kind == "mla") with { NumNextnPredictLayers = depth };

    static DeepSeekLM Build(ModelConfig cfg, int seed)
    {
        torch.manual_seed(seed);
        return new DeepSeekLM(cfg);
    }

    static readonly int[][] Prompts = [[1], [1, 5, 9, 3], [1, 20, 21, 22, 23, 24, 25], [1, 7, 8]];

    [Theory]
    [InlineData("mla", MlaMode.Absorbed, 1)]
    [InlineData("mla", MlaMode.Absorbed, 2)]
    [InlineData("mla", MlaMode.Naive, 1)]
    [InlineData("mla", MlaMode.Naive, 2)]
    [InlineData("gqa", MlaMode.Auto, 1)]
    [InlineData("gqa", MlaMode.Auto, 2)]
    public void BatchedGreedyEqualsBatchedPlainGreedy(string kind, MlaMode mode, int depth)
    {
        using var model = Build(Config(depth, kind), 20 + depth);
        model.SetMlaMode(mode);
        var opts = new SamplingOptions { MaxNewTokens = 12, StopTokens = [] };
        var plain = Generation.Generate(model, Prompts, opts);
        var spec = SpeculativeDecoding.GenerateBatch(model, Prompts, opts);
        for (int b = 0; b < Prompts.Length; b++) Assert.Equal(plain.Completions[b], spec.Completions[b]);
        Assert.InRange(spec.KeptRate, 0, spec.AcceptanceRate);                           // the batch minimum keeps at most each row's own
        Assert.InRange(spec.TokensPerForward, 1, depth + 1);
        // Per-row stop tokens: row 1 stops at its 5th token, the others run on; same as plain batched decoding.
        int stop = plain.Completions[1][4];
        var stopOpts = opts with { StopTokens = [stop] };
        var plainStop = Generation.Generate(model, Prompts, stopOpts);
        var specStop = SpeculativeDecoding.GenerateBatch(model, Prompts, stopOpts);
        for (int b = 0; b < Prompts.Length; b++) Assert.Equal(plainStop.Completions[b], specStop.Completions[b]);
        Assert.Equal(plainStop.Stopped, specStop.Stopped);
        Assert.True(specStop.Stopped[1]);
        // Batch 1 through the batched path is the single-prompt API.
        Assert.Equal(plain.Completions[2], SpeculativeDecoding.Generate(model, Prompts[2], opts).Tokens);
    }

    /// <summary>A draft that IS the target: the main model recomputed on the whole sequence, sampled with the same
    /// transform. q = p (up to the last bits of a different GEMM shape), so every draft is accepted.</summary>
    static DraftSampler TargetAsDraft(DeepSeekLM model, SamplingOptions o) => (seq, count, generator) =>
    {
        using var scope = torch.NewDisposeScope();
        var tokens = new List<int>(seq);
        var probs = new List<Tensor>();
        for (int j = 0; j < count; j++)
        {
            var logits = model.Forward(torch.tensor(tokens.Select(t => (long)t).ToArray()).unsqueeze(0)).select(1, -1);  // [1, V]
            var p = Generation.Probabilities(logits, o);                                                             // [1, V]
            probs.Add(p.squeeze(0));
            tokens.Add((int)torch.multinomial(p, 1, generator: generator).item<long>());
        }
        return (tokens.Skip(seq.Count).ToArray(), torch.stack(probs).MoveToOuterDisposeScope());                      // [count, V]
    };

    [Fact]
    public void DraftEqualToTheTargetIsAlwaysAccepted()
    {
        using var model = Build(Config(0, "gqa"), 30);
        model.eval();
        var opts = new SamplingOptions { MaxNewTokens = 13, StopTokens = [], Temperature = 0.9 };
        using var g = new torch.Generator(7);
        var one = SpeculativeDecoding.GenerateBatch(model, [Prompts[1]], opts, g, TargetAsDraft(model, opts), draftTokens: 3);
        Assert.Equal(1.0, one.AcceptanceRate);
        Assert.Equal(1.0, one.KeptRate);
        Assert.Equal(4, one.MainForwards);                                               // prefill, then 3 rounds of 4 tokens
        var batch = SpeculativeDecoding.GenerateBatch(model, Prompts, opts, g, TargetAsDraft(model, opts), draftTokens: 3);
        Assert.Equal(1.0, batch.AcceptanceRate);
        Assert.All(batch.Completions, c => Assert.Equal(13, c.Length));
        Assert.Equal(4, batch.MainForwards);
    }

    [Fact]
    public void SameSeedSameTokensAndTemperatureZeroIsGreedy()
    {
        using var model = Build(Config(2), 31);
        var opts = new SamplingOptions { MaxNewTokens = 10, StopTokens = [], Temperature = 0.8, TopK = 10, TopP = 0.9 };
        SpeculativeBatchResult Run(ulong seed) { using var g = new torch.Generator(seed); return SpeculativeDecoding.GenerateBatch(model, Prompts, opts, g); }
        var a = Run(5); var b = Run(5); var c = Run(6);
        for (int i = 0; i < Prompts.Length; i++) Assert.Equal(a.Completions[i], b.Completions[i]);
        Assert.Equal(a.Accepted, b.Accepted);
        Assert.False(Enumerable.Range(0, Prompts.Length).All(i => a.Completions[i].SequenceEqual(c.Completions[i])), "another seed should change some token");
        // Temperature 0 ignores the generator and is plain greedy.
        using var g0 = new torch.Generator(5);
        var greedy = SpeculativeDecoding.GenerateBatch(model, Prompts, opts with { Temperature = 0 }, g0);
        var plain = Generation.Generate(model, Prompts, opts with { Temperature = 0 });
        for (int i = 0; i < Prompts.Length; i++) Assert.Equal(plain.Completions[i], greedy.Completions[i]);
    }

    /// <summary>Total-variation tolerance for an empirical distribution of n samples against the exact p over K cells:
    /// E[TV] ≤ ½ Σ_i sqrt(p_i(1−p_i)/n) (Jensen), and TV moves by at most 1/n per sample, so by McDiarmid
    /// P(TV > E[TV] + t) ≤ exp(−2 n t²): t = sqrt(ln(1/δ) / (2n)) with δ = 1e-6.</summary>
    static double TvTolerance(double[] p, int n) => 0.5 * p.Sum(x => Math.Sqrt(x * (1 - x) / n)) + Math.Sqrt(Math.Log(1e6) / (2.0 * n));

    static double Tv(double[] a, double[] b) => 0.5 * a.Zip(b).Sum(x => Math.Abs(x.First - x.Second));

    static double[] Histogram(IEnumerable<int[]> completions, int V, int n)
    {
        var h = new double[V * V];
        foreach (var c in completions) h[c[0] * V + c[1]] += 1.0 / n;
        return h;
    }

    [Fact]
    public void SpeculativeSamplingMatchesTheTargetDistribution()
    {
        // Tiny vocab (V = 6, 36 cells for the first two tokens); the shared head is scaled so that p and the MTP
        // draft's q are peaked and differ (a decoder that kept drafts blindly would be far off, checked below).
        const int V = 6, n = 4000;
        var cfg = ModelConfig.Tiny("mla", vocab: V, hidden: 16, layers: 1, heads: 2) with { NumNextnPredictLayers = 1, MaxPositionEmbeddings = 32 };
        using var model = Build(cfg, 32);
        model.eval();
        using (torch.no_grad()) model.HeadWeight.mul_(15);
        var o = new SamplingOptions { MaxNewTokens = 3, StopTokens = [], Temperature = 0.8, TopP = 0.95 };
        int[] prompt = [1, 4, 2];

        // Exact joint of the first two tokens: p(x1 | prompt) · p(x2 | prompt, x1); and p(x1) · q(x2 | prompt, x1).
        double[] exact = new double[V * V], blind = new double[V * V];
        using (torch.no_grad())
        {
            var p1 = Generation.Probabilities(model.forward(torch.tensor(prompt.Select(t => (long)t).ToArray()).unsqueeze(0)).select(1, -1), o).squeeze(0); // [V]
            var ids = torch.tensor(Enumerable.Range(0, V).SelectMany(x => prompt.Select(t => (long)t).Append(x)).ToArray()).view(V, prompt.Length + 1); // [V, P+1]
            var (logits, mtp) = model.ForwardWithMtp(ids);
            var p2 = Generation.Probabilities(logits.select(1, -1), o);                                 // [V, V]: p(x2 | prompt, x1)
            var q2 = Generation.Probabilities(mtp[0].select(1, prompt.Length - 1), o);                  // [V, V]: MTP draft q(x2 | prompt, x1)
            var pj = (p1.unsqueeze(1) * p2).reshape(-1).data<float>().ToArray();
            var qj = (p1.unsqueeze(1) * q2).reshape(-1).data<float>().ToArray();
            for (int i = 0; i < V * V; i++) { exact[i] = pj[i]; blind[i] = qj[i]; }
        }
        double tol = TvTolerance(exact, n);

        var prompts = Enumerable.Repeat(prompt, n).ToList();
        using var g1 = new torch.Generator(11);
        var spec = SpeculativeDecoding.GenerateBatch(model, prompts, o, g1);
        using var g2 = new torch.Generator(12);
        var plain = Generation.Generate(model, prompts, o, g2);
        double tvSpec = Tv(Histogram(spec.Completions, V, n), exact), tvPlain = Tv(Histogram(plain.Completions, V, n), exact);
        Assert.True(tvSpec < tol, $"speculative TV {tvSpec:F4} ≥ tolerance {tol:F4}");
        Assert.True(tvPlain < tol, $"plain TV {tvPlain:F4} ≥ tolerance {tol:F4}");
        Assert.True(Tv(blind, exact) > 3 * tol, $"draft too close to the target to test anything: TV {Tv(blind, exact):F4}");
        Assert.True(spec.AcceptanceRate is > 0.1 and < 0.9, $"acceptance {spec.AcceptanceRate}, TV {tvSpec:F4} / {tvPlain:F4} < {tol:F4}, blind {Tv(blind, exact):F4}"); // both paths taken often
    }

    [Theory]
    [InlineData(0.8, 3, 0.9, 4)]                                                          // top-k/top-p: p = 0 where q > 0 happens
    public void ChainedDraftsAtBatchOneMatchTheTargetDistribution(double temperature, int topK, double topP, int headScale)
    {
        // D = 2 at batch 1: after the prefill's token x1 (plain sampling), round 1 drafts two tokens, so x2 and x3
        // come from the chained draft (accepted draft, residual sample or bonus). Their joint given x1 is checked
        // on the runs whose x1 is the most likely first token.
        const int V = 5, runs = 800;
        var cfg = ModelConfig.Tiny("gqa", vocab: V, hidden: 16, layers: 1, heads: 2) with { NumNextnPredictLayers = 2, MaxPositionEmbeddings = 32 };
        using var model = Build(cfg, 33);
        model.eval();
        using (torch.no_grad()) model.HeadWeight.mul_(headScale);
        var o = new SamplingOptions { MaxNewTokens = 4, StopTokens = [], Temperature = temperature, TopK = topK, TopP = topP };
        int[] prompt = [1, 3];
        double[] exact = new double[V * V];
        int x1;
        using (torch.no_grad())
        {
            var p1 = Generation.Probabilities(model.forward(torch.tensor(prompt.Select(t => (long)t).ToArray()).unsqueeze(0)).select(1, -1), o).squeeze(0);
            x1 = (int)p1.argmax().item<long>();
            var pre = prompt.Append(x1).Select(t => (long)t).ToArray();
            var p2 = Generation.Probabilities(model.forward(torch.tensor(pre).unsqueeze(0)).select(1, -1), o).squeeze(0);   // [V]
            var ids = torch.tensor(Enumerable.Range(0, V).SelectMany(x => pre.Append(x)).ToArray()).view(V, pre.Length + 1);
            var p3 = Generation.Probabilities(model.forward(ids).select(1, -1), o);                                         // [V, V]
            var pj = (p2.unsqueeze(1) * p3).reshape(-1).data<float>().ToArray();
            for (int i = 0; i < V * V; i++) exact[i] = pj[i];
        }
        var pairs = new List<int[]>();
        long drafted = 0, kept = 0;
        using var g = new torch.Generator(21);
        for (int r = 0; r < runs; r++)
        {
            var res = SpeculativeDecoding.GenerateBatch(model, [prompt], o, g);
            drafted += res.Drafted; kept += res.Kept;
            if (res.Completions[0][0] == x1) pairs.Add([res.Completions[0][1], res.Completions[0][2]]);
        }
        Assert.True(pairs.Count > runs / 4, $"x1 = {x1} seen {pairs.Count} times");
        double tv = Tv(Histogram(pairs, V, pairs.Count), exact), tol = TvTolerance(exact, pairs.Count);
        Assert.True(tv < tol, $"TV {tv:F4} ≥ tolerance {tol:F4} over {pairs.Count} samples");
        Assert.True((double)kept / drafted is > 0.05 and < 0.95, $"kept {(double)kept / drafted}, TV {tv:F4} < {tol:F4}, n {pairs.Count}");
    }

    [Fact]
    public void BadInputsAreClearErrors()
    {
        using var model = Build(Config(1), 34);
        Assert.Throws<WhaleArgumentException>(() => SpeculativeDecoding.GenerateBatch(model, [], new SamplingOptions()));          // batch 0
        Assert.Throws<WhaleArgumentException>(() => SpeculativeDecoding.GenerateBatch(model, [[1], []], new SamplingOptions()));   // empty prompt
        Assert.Throws<WhaleArgumentException>(() => SpeculativeDecoding.GenerateBatch(model, Prompts, new SamplingOptions { Temperature = -0.5 }));
        Assert.Throws<WhaleArgumentException>(() => SpeculativeDecoding.GenerateBatch(model, Prompts, new SamplingOptions { Temperature = double.NaN }));
        Assert.Throws<WhaleArgumentException>(() => SpeculativeDecoding.GenerateBatch(model, Prompts, new SamplingOptions { Temperature = 1, TopP = 0 }));
        Assert.Throws<WhaleArgumentException>(() => SpeculativeDecoding.GenerateBatch(model, Prompts, new SamplingOptions { Temperature = 1, TopP = 1.5 }));
        Assert.Throws<WhaleArgumentException>(() => SpeculativeDecoding.GenerateBatch(model, Prompts, new SamplingOptions { Temperature = 1, TopK = -1 }));
        Assert.Throws<WhaleArgumentException>(() => SpeculativeDecoding.GenerateBatch(model, Prompts, new SamplingOptions { MaxNewTokens = 0 }));
        DraftSampler wrongCount = (seq, count, _) => (new int[count + 1], null);
        Assert.Throws<WhaleArgumentException>(() => SpeculativeDecoding.GenerateBatch(model, Prompts, new SamplingOptions { Temperature = 1 }, drafter: wrongCount, draftTokens: 2));
        DraftSampler outOfVocab = (seq, count, _) => (Enumerable.Repeat(999, count).ToArray(), null);
        Assert.Throws<WhaleArgumentException>(() => SpeculativeDecoding.GenerateBatch(model, Prompts, new SamplingOptions(), drafter: outOfVocab, draftTokens: 2));
        Assert.Throws<WhaleArgumentException>(() => Generation.Probabilities(torch.zeros(2, 5), new SamplingOptions { Temperature = 0 }));
    }

    [Fact]
    public void MtpEvalLossEqualsHandComputedCrossEntropy()
    {
        var cfg = Config(2);
        using var model = Build(cfg, 35);
        var tokens = Enumerable.Range(0, 300).Select(i => 3 + (i * 7 + i / 5) % 30).ToArray();
        var result = MtpEvaluation.Evaluate(model, new TokenWindowStream(tokens, 3, 10, 4), 2, CPU);
        Assert.True(model.training);                                                      // the flag is restored

        // By hand on the same two batches: −log softmax(logits)[target], averaged; depth k scores module k's
        // logits at positions 0…T−k−1 against targets shifted by k (token t_{i+k+1}).
        var stream = new TokenWindowStream(tokens, 3, 10, 4);
        model.eval();
        double main = 0; var depths = new double[2];
        using (torch.no_grad())
            for (int i = 0; i < 2; i++)
            {
                var (x, y) = stream.Next(CPU);                                            // [3, 10]
                var (logits, mtp) = model.ForwardWithMtp(x);
                main += Nll(logits, y);
                for (int k = 1; k <= 2; k++) depths[k - 1] += Nll(mtp[k - 1], y.narrow(1, k, 10 - k));
            }
        Assert.Equal(main / 2, result.Main, 4);
        for (int k = 0; k < 2; k++) Assert.Equal(depths[k] / 2, result.Depths[k], 4);
        Assert.Equal(30, result.TokensPerBatch);
        Assert.Contains("depth 2", result.ToString());
        // The main loss is the trainer's eval loss on the same batches.
        var trainer = new LmTrainer(model, new TrainOptions { Steps = 1, WarmupSteps = 1, BatchSize = 3, SequenceLength = 10 });
        Assert.Equal(result.Main, trainer.Evaluate(new TokenWindowStream(tokens, 3, 10, 4), 2, CPU), 5);
    }

    /// <summary>Mean −log p[target] with an explicit log-sum-exp.</summary>
    static double Nll(Tensor logits, Tensor targets)
    {
        var l = logits.to_type(ScalarType.Float64);
        var max = l.amax([-1], keepdim: true);
        var logZ = (l - max).exp().sum(-1, keepdim: true).log() + max;                    // [B, T, 1]
        var picked = l.gather(-1, targets.unsqueeze(-1));                                  // [B, T, 1]
        return (logZ - picked).mean().item<double>();
    }
}
