// The MTP experiment (DeepSeek-V3 §2.2 and §5.4.3): train a small character-level DeepSeek-style LM with D
// multi-token-prediction modules on the synthetic corpus, then decode the same prompts with plain greedy
// decoding (Generation.Generate, KV cache, batch 1) and with MTP self-speculative decoding, and report the
// draft acceptance rate, emitted tokens per main-model forward, tokens/s of both and the speed-up. Batched (batch
// size B) and sampled (temperature / top-k / top-p, seeded) decoding are measured the same way; greedy decoders
// must emit identical tokens (checked on every batch). Shared by `whale mtp` and the `speculative` benchmark.
//
// Shapes: B batch, T sequence length, D MTP depth, N new tokens per prompt.
using TorchSharp;
using WhaleTech.Lab.Bench;
using WhaleTech.Model;
using static TorchSharp.torch;
using WhaleTech.Core;

using WhaleTech.Runtime;
using WhaleTech.Training;

namespace WhaleTech.Lab.Mtp;

public sealed record MtpExperimentOptions
{
    public string Attention { get; init; } = "mla";
    public ModelShape Model { get; init; } = new() { Hidden = 128, Layers = 4, Heads = 4 };
    /// <summary>D = num_nextn_predict_layers.</summary>
    public int Depth { get; init; } = 1;
    /// <summary>Steps, batch and peak learning rate (warm-up 10 %, cosine to lr/10).</summary>
    public TrainingLoop Loop { get; init; } = new() { Steps = 600, BatchSize = 16, LearningRate = 3e-3 };
    public int SequenceLength { get; init; } = 64;
    /// <summary>λ of eq. 25.</summary>
    public double MtpWeight { get; init; } = MultiTokenPrediction.DefaultWeight;
    public int Seed { get; init; } = 1;

    public MtpExperimentOptions Validate()
    {
        Model.Validate();
        Runtime.Guard.Positive("depth", Depth);
        Loop.Validate();
        return this;
    }

    public ModelConfig ModelConfig(int vocab) => Model.Tiny(Attention, vocab) with { NumNextnPredictLayers = Depth };

    public TrainOptions TrainOptions() => new(Loop)
    {
        SequenceLength = SequenceLength, MinLearningRate = Loop.LearningRate / 10,
        WarmupSteps = Math.Max(1, Loop.Steps / 10), EvalEvery = Math.Max(1, Loop.Steps / 5), Seed = Seed, MtpWeight = MtpWeight,
    };
}

/// <summary>One batch's decode, plain vs speculative (Prompt = the batch's prompts joined by " · ").</summary>
public sealed record SpeculativeMeasurement(string Prompt, int NewTokens, double PlainMs, double SpeculativeMs, double AcceptanceRate,
                                            double TokensPerForward, bool SameTokens, string Completion)
{
    /// <summary>Drafts emitted / drafted after the batch minimum (= AcceptanceRate at batch 1).</summary>
    public double KeptRate { get; init; } = AcceptanceRate;
}

/// <summary>How <see cref="MtpExperiment.MeasureDecode"/> decodes: batch size and the sampling settings both decoders share.
/// Temperature 0 = greedy (the tokens must be identical); else both sample with generators seeded by Seed.</summary>
public sealed record DecodeSettings
{
    public int BatchSize { get; init; } = 1;
    public double Temperature { get; init; }
    public int TopK { get; init; }
    public double TopP { get; init; } = 1.0;
    public int Seed { get; init; } = 1;
    public bool Greedy => Temperature == 0;

    public SamplingOptions Options(int newTokens)
    {
        Runtime.Guard.Positive("batch size", BatchSize);
        return new SamplingOptions { MaxNewTokens = newTokens, StopTokens = [], Temperature = Temperature, TopK = TopK, TopP = TopP }.Validate();
    }
}

/// <summary>All batches: acceptance = accepted / drafted over all of them; speed-up = Σ plain ms / Σ speculative ms.
/// AllSame is only meaningful when greedy (sampled runs draw different random numbers).</summary>
public sealed record SpeculativeSummary(IReadOnlyList<SpeculativeMeasurement> Prompts, double AcceptanceRate, double TokensPerForward,
                                        double PlainTokensPerSecond, double SpeculativeTokensPerSecond, bool AllSame)
{
    public double SpeedUp => SpeculativeTokensPerSecond / PlainTokensPerSecond;
    /// <summary>Drafts emitted / drafted after the batch minimum.</summary>
    public double KeptRate { get; init; } = AcceptanceRate;
    public DecodeSettings Settings { get; init; } = new();
}

public static class MtpExperiment
{
    /// <summary>Prompts from the corpus' four kinds of lines.</summary>
    public static IReadOnlyList<string> DefaultPrompts { get; } = ["the big ", "17+25=", "3 4 5", "abc>", "a red fox sees ", "the cats "];

    /// <summary>Trains a model with MTP on the synthetic corpus; <paramref name="onStep"/> sees every step.</summary>
    public static (DeepSeekLM Model, List<StepMetrics> History) Train(MtpExperimentOptions o, Device device, Action<StepMetrics>? onStep = null)
    {
        var (model, trainer, train, eval) = Setup(o, device);
        return (model, trainer.Run(train, eval, device, onStep));
    }

    /// <summary>Train in a run folder (metrics.jsonl, TensorBoard, checkpoints every N steps, Ctrl-C, --resume; Training/LmRun.cs).
    /// A resumed run must be given the options it was started with (checked against the checkpoint).</summary>
    public static (DeepSeekLM Model, List<StepMetrics> History, bool Interrupted) Train(MtpExperimentOptions o, Device device, LmRunFolder folder,
        StopSignal? stop = null, Action<StepMetrics>? onStep = null)
    {
        folder.Validate();
        if (folder.Resume && folder.Resolve(o.ModelConfig(new CharTokenizer().VocabSize), o.TrainOptions()) is var (cfg, stored)
            && (stored != o.TrainOptions() || cfg.ToJson() != o.ModelConfig(new CharTokenizer().VocabSize).ToJson()))
            throw new WhaleArgumentException("resume", folder.CheckpointDir, "was written with other options: pass the options the run was started with");
        var (model, trainer, train, eval) = Setup(o, device);
        var (history, interrupted) = LmRun.Run(model, trainer, train, eval, device, folder, stop, onStep);
        return (model, history, interrupted);
    }

    static (DeepSeekLM, LmTrainer, TokenWindowStream Train, TokenWindowStream Eval) Setup(MtpExperimentOptions o, Device device)
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
        return (model, trainer, train, eval);
    }

    /// <summary>The final held-out losses: main and each MTP depth on <paramref name="batches"/> batches of the
    /// evaluation corpus (the same held-out text as the periodic eval, its own stream of windows).</summary>
    public static MtpEvalLoss EvaluateHeldOut(DeepSeekLM model, MtpExperimentOptions o, Device device, int batches = 16)
    {
        var tok = new CharTokenizer();
        var stream = new TokenWindowStream(tok.Encode(new SyntheticCorpus(8000, o.Seed + 1000).Text), o.Loop.BatchSize, o.SequenceLength, o.Seed + 2);
        return MtpEvaluation.Evaluate(model, stream, batches, device);
    }

    /// <summary>Decodes the prompts <paramref name="newTokens"/> tokens each (no stop tokens, so both decoders do the same
    /// amount of work) with plain decoding (<see cref="Generation.Generate"/>) and with MTP speculative decoding, in
    /// batches of <c>settings.BatchSize</c> (the prompt list is cycled to fill the last batch), greedy or sampled with
    /// the same settings. After <paramref name="warmup"/> untimed runs of each, the two decoders alternate for
    /// <paramref name="repetitions"/> timed runs (so a busy machine slows both alike); each batch reports the median of each.</summary>
    public static SpeculativeSummary MeasureDecode(DeepSeekLM model, IReadOnlyList<string> prompts, int newTokens, Device device, int warmup = 2, int repetitions = 7,
                                                   DecodeSettings? settings = null)
    {
        Runtime.Guard.Positive("repetitions", repetitions);
        if (prompts.Count == 0) throw new Runtime.WhaleArgumentException("prompts", "[]", "must hold at least one prompt");
        settings ??= new DecodeSettings();
        var opts = settings.Options(newTokens);
        int batch = settings.BatchSize;
        var tok = new CharTokenizer();
        int rowsTotal = (prompts.Count + batch - 1) / batch * batch;
        var texts = Enumerable.Range(0, rowsTotal).Select(i => prompts[i % prompts.Count]).ToList();
        var rows = new List<SpeculativeMeasurement>();
        long drafted = 0, accepted = 0, kept = 0, rowForwards = 0, emitted = 0;
        for (int start = 0; start < rowsTotal; start += batch)
        {
            var chunk = texts.Skip(start).Take(batch).ToList();
            var ids = chunk.Select(t => tok.Encode(t.ToLowerInvariant(), addBos: true)).ToList();
            int[][] plainTokens = [];
            SpeculativeBatchResult spec = null!;
            void Plain() { using var scope = torch.NewDisposeScope(); using var g = Generator(device, settings); plainTokens = Generation.Generate(model, ids, opts, g).Completions; }
            void Speculative() { using var scope = torch.NewDisposeScope(); using var g = Generator(device, settings); spec = SpeculativeDecoding.GenerateBatch(model, ids, opts, g); }
            for (int i = 0; i < warmup; i++) { Plain(); Speculative(); }
            var plainMs = new double[repetitions]; var specMs = new double[repetitions];
            for (int i = 0; i < repetitions; i++)
            {
                plainMs[i] = TimeMs(device, Plain);
                specMs[i] = TimeMs(device, Speculative);
            }
            drafted += spec.Drafted; accepted += spec.Accepted; kept += spec.Kept; rowForwards += spec.RowForwards; emitted += spec.Completions.Sum(c => c.Length);
            bool same = plainTokens.Zip(spec.Completions).All(p => p.First.SequenceEqual(p.Second));
            rows.Add(new SpeculativeMeasurement(string.Join(" · ", chunk), newTokens, Timing.FromSamples(plainMs).MedianMs, Timing.FromSamples(specMs).MedianMs,
                                                spec.AcceptanceRate, spec.TokensPerForward, same, tok.Decode(spec.Completions[0])) { KeptRate = spec.KeptRate });
        }
        double plainTotalMs = rows.Sum(r => r.PlainMs), specTotalMs = rows.Sum(r => r.SpeculativeMs);
        long total = (long)rowsTotal * newTokens;
        return new SpeculativeSummary(rows, drafted == 0 ? 0 : (double)accepted / drafted, (double)emitted / rowForwards,
                                      total / (plainTotalMs / 1000), total / (specTotalMs / 1000), rows.All(r => r.SameTokens))
        { KeptRate = drafted == 0 ? 0 : (double)kept / drafted, Settings = settings };
    }

    /// <summary>A fresh generator seeded by the settings: every run of a decoder draws the same random numbers.</summary>
    static torch.Generator Generator(Device device, DecodeSettings s) => new torch.Generator((ulong)s.Seed, device);

    /// <summary>The measurement as a benchmark result (JSON + Markdown + PNG via Bench.ResultWriter): rows "plain" and
    /// "speculative" at x = the model's layer count, plus one "prompt" row per prompt.</summary>
    public static BenchmarkResult AddTo(BenchmarkResult result, SpeculativeSummary s, ModelConfig cfg, StepMetrics? lastStep = null, MtpEvalLoss? heldOut = null)
    {
        int layers = cfg.NumHiddenLayers;
        var st = s.Settings;
        result.AddRow("plain").With("layers", layers).With("hidden", cfg.HiddenSize).With("batch", st.BatchSize).With("temperature", st.Temperature)
            .Add("tokens_per_s", s.PlainTokensPerSecond, "tokens/s");
        var row = result.AddRow("speculative").With("layers", layers).With("hidden", cfg.HiddenSize).With("mtp_depth", cfg.NumNextnPredictLayers)
            .With("batch", st.BatchSize).With("temperature", st.Temperature).With("top_k", st.TopK).With("top_p", st.TopP).With("seed", st.Seed)
            .Add("tokens_per_s", s.SpeculativeTokensPerSecond, "tokens/s").Add("speed_up", s.SpeedUp, "×")
            .Add("acceptance_rate", s.AcceptanceRate, "").Add("kept_rate", s.KeptRate, "").Add("tokens_per_forward", s.TokensPerForward, "");
        if (st.Greedy) row.Add("identical_tokens", s.AllSame ? 1 : 0, "bool");
        if (lastStep is { } m) row.Add("eval_loss", m.EvalLoss ?? double.NaN, "nats").Add("mtp_loss", m.MtpLosses?[0] ?? double.NaN, "nats");
        if (heldOut is { } e)
        {
            row.Add("heldout_main_loss", e.Main, "nats");
            for (int k = 0; k < e.Depths.Length; k++) row.Add($"heldout_mtp_loss_{k + 1}", e.Depths[k], "nats");
        }
        foreach (var p in s.Prompts)
        {
            var pr = result.AddRow("prompt").With("layers", layers).With("batch", st.BatchSize).With("temperature", st.Temperature).With("prompt", p.Prompt)
                .Add("plain_ms", p.PlainMs, "ms").Add("speculative_ms", p.SpeculativeMs, "ms")
                .Add("acceptance_rate", p.AcceptanceRate, "").Add("kept_rate", p.KeptRate, "").Add("tokens_per_forward", p.TokensPerForward, "");
            if (st.Greedy) pr.Add("identical_tokens", p.SameTokens ? 1 : 0, "bool");
        }
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
