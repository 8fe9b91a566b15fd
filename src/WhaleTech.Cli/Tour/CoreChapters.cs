// Tour chapters of the model core: KV bytes of MLA vs MHA/GQA/MQA, decode speed with and without the
// KV cache, and a tiny DeepSeek-style LM trained for about a minute, then sampled.
using System.Diagnostics;
using TorchSharp;
using WhaleTech.Attention;
using WhaleTech.Model;
using WhaleTech.Training;
using static TorchSharp.torch;
using WhaleTech.Core;

namespace WhaleTech.Cli.Tour;

/// <summary>Chapter 1: per-token KV cache elements at DeepSeek-V3's shapes (61 layers, 128 heads) — the
/// caches are really allocated for a tiny model to show the formula and the allocation agree.</summary>
public sealed class KvCacheChapter : ITourChapter
{
    public string Title => "1. The KV cache: MLA's latent vs MHA, GQA and MQA";

    public TourSection Run(TourContext ctx, Action<double> progress)
    {
        // Per-token, per-layer KV elements at DeepSeek-V3's shapes, from the same accounting as `whale kv`.
        var v3 = KvShape.From(ModelPresets.DeepSeekV3);
        var rows = Enum.GetValues<KvLayout>()
            .Select(layout => (Kind: KvAccounting.Name(v3, layout), Elements: KvAccounting.ElementsPerTokenPerLayer(v3, layout)))
            .ToList();                                                             // [MHA, GQA-8, MQA, MLA materialized, MLA latent]
        progress(0.5);
        // The allocation check: a tiny MLA model's latent cache holds exactly layers·B·C·(Dc+Dr) elements.
        var tiny = ModelConfig.Tiny("mla", vocab: 32, hidden: 32, layers: 2, heads: 4);
        using var model = new DeepSeekLM(tiny);
        using var cache = model.CreateCache(2, 16);
        long expected = (long)KvAccounting.CacheBytes(KvShape.From(tiny), KvLayout.MlaLatent, batch: 2, context: 16, bytesPerElement: 4);
        progress(1);
        var plot = "kv_elements.png";
        PngPlot.Bars(Path.Combine(ctx.OutDir, plot), "KV cache elements per token per layer (DeepSeek-V3 shapes)", "elements", rows.Select(r => (r.Kind, (double)r.Elements)).ToList(), logY: true);
        var md = "KV elements cached per token per layer at DeepSeek-V3's attention shapes:\n\n| attention | elements | vs MHA |\n|---|---:|---:|\n" +
                 string.Join("\n", rows.Select(r => $"| {r.Kind} | {r.Elements:N0} | {100.0 * r.Elements / rows[0].Elements:F1}% |")) +
                 $"\n\nA tiny MLA model's allocated latent cache: {cache.Bytes:N0} bytes = layers × batch × slots × (Dc + Dr) × 4 = {expected:N0}.";
        var (mha, latent) = (rows[0].Elements, rows[^1].Elements);
        return new TourSection(Title, md, "KV/token/layer, MLA latent vs MHA", $"{latent} vs {mha} elements ({100.0 * latent / mha:F1}%)", [plot]);
    }
}

/// <summary>Chapter 2: tokens/s of batched greedy decode with and without the KV cache.</summary>
public sealed class DecodeSpeedChapter : ITourChapter
{
    public string Title => "2. Decoding with and without the KV cache";

    public TourSection Run(TourContext ctx, Action<double> progress)
    {
        torch.manual_seed(ctx.Seed);
        var cfg = ModelConfig.Tiny("mla", vocab: 64, hidden: 128, layers: 4, heads: 4) with { MaxPositionEmbeddings = 512 };
        using var model = new DeepSeekLM(cfg);
        model.to(ctx.Device);
        int newTokens = ctx.Quick ? 16 : 64, batch = 8;
        var prompts = Enumerable.Range(0, batch).Select(b => Enumerable.Range(0, 16 + b).Select(i => 3 + (i * 7 + b) % 60).ToArray()).ToArray();
        var results = new List<(string Variant, double TokensPerSecond)>();
        var variants = new[] { ("KV cache (absorbed MLA)", true, MlaMode.Absorbed), ("KV cache (naive MLA)", true, MlaMode.Naive), ("no cache (recompute)", false, MlaMode.Auto) };
        int done = 0;
        foreach (var (name, useCache, mode) in variants)
        {
            model.SetMlaMode(mode);
            var opts = new SamplingOptions { MaxNewTokens = newTokens, StopTokens = [], UseCache = useCache };
            Generation.Generate(model, prompts, opts with { MaxNewTokens = 4 }); // warm-up
            Runtime.Backend.Synchronize(ctx.Device);
            var sw = Stopwatch.StartNew();
            var r = Generation.Generate(model, prompts, opts);
            Runtime.Backend.Synchronize(ctx.Device);
            results.Add((name, r.Lengths.Sum() / sw.Elapsed.TotalSeconds));
            progress(++done / (double)variants.Length);
        }
        var plot = "decode_speed.png";
        PngPlot.Bars(Path.Combine(ctx.OutDir, plot), $"Greedy decode, batch {batch}, {newTokens} new tokens ({ctx.Device.type})", "tokens/s", results);
        double speedup = results[0].TokensPerSecond / results[2].TokensPerSecond;
        var md = $"Batch {batch}, prompts of 16–23 tokens, {newTokens} new tokens, a 4-layer MLA model on {ctx.Device.type}:\n\n| variant | tokens/s |\n|---|---:|\n" +
                 string.Join("\n", results.Select(r => $"| {r.Variant} | {r.TokensPerSecond:F0} |")) +
                 $"\n\nThe cache turns each step from re-reading the whole sequence into one new token per sequence: {speedup:F1}× here. (Timings from this run; see benchmarks/ for medians.)";
        return new TourSection(Title, md, "decode tokens/s, cache vs recompute", $"{results[0].TokensPerSecond:F0} vs {results[2].TokensPerSecond:F0} ({speedup:F1}×)", [plot]);
    }
}

/// <summary>Chapter 3: a tiny DeepSeek-style LM (MLA attention) trained on the synthetic corpus, then sampled.</summary>
public sealed class TinyLmChapter : ITourChapter
{
    public string Title => "3. A tiny DeepSeek-style LM learns a synthetic language";

    public TourSection Run(TourContext ctx, Action<double> progress)
    {
        torch.manual_seed(ctx.Seed);
        var tok = new CharTokenizer();
        var train = new SyntheticCorpus(60000, ctx.Seed);
        var eval = new SyntheticCorpus(8000, ctx.Seed + 1000);
        var cfg = ModelConfig.Tiny("mla", vocab: tok.VocabSize, hidden: ctx.Quick ? 64 : 96, layers: ctx.Quick ? 2 : 3, heads: 4);
        using var model = new DeepSeekLM(cfg);
        model.to(ctx.Device);
        int steps = ctx.Quick ? 40 : 1200;
        var opts = new TrainOptions { Steps = steps, BatchSize = 16, SequenceLength = 64, LearningRate = 5e-3, MinLearningRate = 5e-4, WarmupSteps = steps / 10, EvalEvery = Math.Max(1, steps / 6), EvalBatches = 4, Seed = ctx.Seed };
        var trainer = new LmTrainer(model, opts);
        var history = trainer.Run(new TokenWindowStream(tok.Encode(train.Text), 16, 64, ctx.Seed), new TokenWindowStream(tok.Encode(eval.Text), 16, 64, ctx.Seed + 1), ctx.Device,
            m => progress(m.Step / (double)steps));
        double entropy = eval.UnigramEntropyNats();
        double evalLoss = history[^1].EvalLoss!.Value;
        var evals = history.Where(h => h.EvalLoss is not null).ToArray();
        var plot = "tiny_lm_loss.png";
        PngPlot.Lines(Path.Combine(ctx.OutDir, plot), "Tiny MLA LM on the synthetic corpus", "step", "loss (nats/char)",
            [("train", history.Select(h => (double)h.Step).ToArray(), history.Select(h => h.Loss).ToArray()),
             ("eval", evals.Select(h => (double)h.Step).ToArray(), evals.Select(h => h.EvalLoss!.Value).ToArray())],
            entropy, "unigram entropy");
        var prompts = new[] { "the big ", "17+25=", "3 4 5", "abcd>", "the cats " };
        var gen = Generation.Generate(model, prompts.Select(p => tok.Encode(p, addBos: true)).ToArray(),
            new SamplingOptions { MaxNewTokens = 24, StopTokens = [tok.IdOf('\n')] });
        var samples = prompts.Zip(gen.Completions, (p, c) => $"    {p}|{tok.Decode(c).TrimEnd('\n')}");
        var md = $"{model.ParameterCount():N0} parameters, {steps} AdamW steps of 16×64 characters. Eval loss {evalLoss:F3} nats/char against a unigram entropy of {entropy:F3}: " +
                 $"far below, so it learned much of the structure — the greedy samples (prompt|completion) show what it got and what it did not (two-digit sums are the hardest part):\n\n" + string.Join("\n", samples);
        return new TourSection(Title, md, "tiny LM eval loss vs unigram entropy", $"{evalLoss:F2} vs {entropy:F2} nats", [plot]);
    }
}
