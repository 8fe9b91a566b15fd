// The MTP experiment (DeepSeek-V3 §2.2 and §5.4.3): train a small character-level DeepSeek-style LM with D
// multi-token-prediction modules on the synthetic corpus, then decode the same prompts with plain greedy
// decoding (Generation.Generate, KV cache, batch 1) and with MTP self-speculative decoding, and report the
// draft acceptance rate, emitted tokens per main-model forward, tokens/s of both and the speed-up. Both decoders
// must emit identical tokens (checked on every prompt). Shared by `whale mtp` and the `speculative` benchmark.
//
// Shapes: B batch, T sequence length, D MTP depth, N new tokens per prompt.
using TorchSharp;
using WhaleTech.Bench;
using WhaleTech.Model;
using static TorchSharp.torch;

namespace WhaleTech.Training;

public sealed record MtpExperimentOptions
{
    public string Attention { get; init; } = "mla";
    public int Hidden { get; init; } = 128;
    public int Layers { get; init; } = 4;
    public int Heads { get; init; } = 4;
    /// <summary>D = num_nextn_predict_layers.</summary>
    public int Depth { get; init; } = 1;
    public int Steps { get; init; } = 600;
    public int BatchSize { get; init; } = 16;
    public int SequenceLength { get; init; } = 64;
    public double LearningRate { get; init; } = 3e-3;
    /// <summary>λ of eq. 25.</summary>
    public double MtpWeight { get; init; } = MultiTokenPrediction.DefaultWeight;
    public int Seed { get; init; } = 1;

    public MtpExperimentOptions Validate()
    {
        Runtime.Guard.Positive("depth", Depth);
        Runtime.Guard.Positive("steps", Steps);
        return this;
    }

    public ModelConfig ModelConfig(int vocab) => Model.ModelConfig.Tiny(Attention, vocab, Hidden, Layers, Heads) with { NumNextnPredictLayers = Depth };

    public TrainOptions TrainOptions() => new()
    {
        Steps = Steps, BatchSize = BatchSize, SequenceLength = SequenceLength, LearningRate = LearningRate, MinLearningRate = LearningRate / 10,
        WarmupSteps = Math.Max(1, Steps / 10), EvalEvery = Math.Max(1, Steps / 5), Seed = Seed, MtpWeight = MtpWeight,
    };
}

/// <summary>One prompt's decode, plain vs speculative.</summary>
public sealed record SpeculativeMeasurement(string Prompt, int NewTokens, double PlainMs, double SpeculativeMs, double AcceptanceRate,
                                            double TokensPerForward, bool SameTokens, string Completion);

/// <summary>All prompts: acceptance = accepted / drafted over all of them; speed-up = Σ plain ms / Σ speculative ms.</summary>
public sealed record SpeculativeSummary(IReadOnlyList<SpeculativeMeasurement> Prompts, double AcceptanceRate, double TokensPerForward,
                                        double PlainTokensPerSecond, double SpeculativeTokensPerSecond, bool AllSame)
{
    public double SpeedUp => SpeculativeTokensPerSecond / PlainTokensPerSecond;
}

public static class MtpExperiment
{
    /// <summary>Prompts from the corpus' four kinds of lines.</summary>
    public static IReadOnlyList<string> DefaultPrompts { get; } = ["the big ", "17+25=", "3 4 5", "abc>", "a red fox sees ", "the cats "];

    /// <summary>Trains a model with MTP on the synthetic corpus; <paramref name="onStep"/> sees every step.</summary>
    public static (DeepSeekLM Model, List<StepMetrics> History) Train(MtpExperimentOptions o, Device device, Action<StepMetrics>? onStep = null)
    {
        o.Validate();
        torch.manual_seed(o.Seed);
        var tok = new CharTokenizer();
        var model = new DeepSeekLM(o.ModelConfig(tok.VocabSize));
        model.to(device);
        var opts = o.TrainOptions();
        var trainer = new LmTrainer(model, opts);
        var train = new TokenWindowStream(tok.Encode(new SyntheticCorpus(60000, o.Seed).Text), opts.BatchSize, opts.SequenceLength, o.Seed);
        var eval = new TokenWindowStream(tok.Encode(new SyntheticCorpus(8000, o.Seed + 1000).Text), opts.BatchSize, opts.SequenceLength, o.Seed + 1);
        var history = trainer.Run(train, eval, device, onStep);
        return (model, history);
    }

    /// <summary>Decodes every prompt <paramref name="newTokens"/> tokens (no stop tokens, so both decoders do the same
    /// amount of work) with plain greedy decoding and with MTP speculative decoding, batch 1. After
    /// <paramref name="warmup"/> untimed runs of each, the two decoders alternate for <paramref name="repetitions"/>
    /// timed runs (so a busy machine slows both alike); each prompt reports the median of each.</summary>
    public static SpeculativeSummary MeasureDecode(DeepSeekLM model, IReadOnlyList<string> prompts, int newTokens, Device device, int warmup = 2, int repetitions = 7)
    {
        Runtime.Guard.Positive("repetitions", repetitions);
        var tok = new CharTokenizer();
        var opts = new SamplingOptions { MaxNewTokens = newTokens, StopTokens = [] };
        var rows = new List<SpeculativeMeasurement>();
        long drafted = 0, accepted = 0, forwards = 0, emitted = 0;
        foreach (var text in prompts)
        {
            var ids = tok.Encode(text.ToLowerInvariant(), addBos: true);
            int[] plainTokens = [];
            SpeculativeResult spec = null!;
            void Plain() { using var scope = torch.NewDisposeScope(); plainTokens = Generation.Generate(model, [ids], opts).Completions[0]; }
            void Speculative() { using var scope = torch.NewDisposeScope(); spec = SpeculativeDecoding.Generate(model, ids, opts); }
            for (int i = 0; i < warmup; i++) { Plain(); Speculative(); }
            var plainMs = new double[repetitions]; var specMs = new double[repetitions];
            for (int i = 0; i < repetitions; i++)
            {
                plainMs[i] = TimeMs(device, Plain);
                specMs[i] = TimeMs(device, Speculative);
            }
            drafted += spec.Drafted; accepted += spec.Accepted; forwards += spec.MainForwards; emitted += spec.Tokens.Length;
            rows.Add(new SpeculativeMeasurement(text, newTokens, Timing.FromSamples(plainMs).MedianMs, Timing.FromSamples(specMs).MedianMs,
                                                spec.AcceptanceRate, spec.TokensPerForward, plainTokens.SequenceEqual(spec.Tokens), tok.Decode(spec.Tokens)));
        }
        double plainTotalMs = rows.Sum(r => r.PlainMs), specTotalMs = rows.Sum(r => r.SpeculativeMs);
        long total = (long)prompts.Count * newTokens;
        return new SpeculativeSummary(rows, drafted == 0 ? 0 : (double)accepted / drafted, (double)emitted / forwards,
                                      total / (plainTotalMs / 1000), total / (specTotalMs / 1000), rows.All(r => r.SameTokens));
    }

    /// <summary>The measurement as a benchmark result (JSON + Markdown + PNG via Bench.ResultWriter): rows "plain" and
    /// "speculative" at x = the model's layer count, plus one "prompt" row per prompt.</summary>
    public static BenchmarkResult AddTo(BenchmarkResult result, SpeculativeSummary s, ModelConfig cfg, StepMetrics? lastStep = null)
    {
        int layers = cfg.NumHiddenLayers;
        result.AddRow("plain").With("layers", layers).With("hidden", cfg.HiddenSize).Add("tokens_per_s", s.PlainTokensPerSecond, "tokens/s");
        var row = result.AddRow("speculative").With("layers", layers).With("hidden", cfg.HiddenSize).With("mtp_depth", cfg.NumNextnPredictLayers)
            .Add("tokens_per_s", s.SpeculativeTokensPerSecond, "tokens/s").Add("speed_up", s.SpeedUp, "×")
            .Add("acceptance_rate", s.AcceptanceRate, "").Add("tokens_per_forward", s.TokensPerForward, "").Add("identical_tokens", s.AllSame ? 1 : 0, "bool");
        if (lastStep is { } m) row.Add("eval_loss", m.EvalLoss ?? double.NaN, "nats").Add("mtp_loss", m.MtpLosses?[0] ?? double.NaN, "nats");
        foreach (var p in s.Prompts)
            result.AddRow("prompt").With("layers", layers).With("prompt", p.Prompt).Add("plain_ms", p.PlainMs, "ms").Add("speculative_ms", p.SpeculativeMs, "ms")
                .Add("acceptance_rate", p.AcceptanceRate, "").Add("tokens_per_forward", p.TokensPerForward, "").Add("identical_tokens", p.SameTokens ? 1 : 0, "bool");
        return result;
    }

    static double TimeMs(Device device, Action body)
    {
        Runtime.Backend.Synchronize(device);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        body();
        Runtime.Backend.Synchronize(device);
        return clock.Elapsed.TotalMilliseconds;
    }
}
