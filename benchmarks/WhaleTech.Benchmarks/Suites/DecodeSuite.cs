// `decode`: batched greedy decode tokens/s of a tiny DeepSeek-style LM with and without the KV cache.
//   with cache      each step feeds one token per sequence and reads the cache: O(T) work per step;
//   no cache        each step recomputes the whole sequence: O(T²) attention, O(T) everything else.
// Variants: MLA absorbed (latent cache), MLA naive (materialized K/V cache), MLA without cache, and an
// MHA model of the same width with its K/V cache. tokens/s = batch · new tokens / median wall time.
using TorchSharp;
using WhaleTech.Attention;
using WhaleTech.Lab.Bench;
using WhaleTech.Model;
using WhaleTech.Runtime;
using static TorchSharp.torch;
using WhaleTech.Core;

namespace WhaleTech.Benchmarks;

public sealed class DecodeSuite : ISuite
{
    public string Name => "decode";
    public string Description =>
        "Greedy decode of a 4-layer, 128-wide DeepSeek-style LM (vocab 64), prompts of 16 tokens: tokens/s with the KV cache " +
        "(MLA absorbed / naive, MHA) and without it (full recomputation every step).";

    public BenchmarkResult Run(Device device, SuiteOptions options)
    {
        bool cuda = device.type == DeviceType.CUDA;
        int[] batches = options.Quick ? [4] : cuda ? [1, 16, 64] : [1, 8];
        int[] newTokens = options.Quick ? [16] : cuda ? [64, 256] : [32, 128];
        var result = new BenchmarkResult(Name, Description, MachineInfo.Collect(device)) { Plot = new PlotSpec("tokens_per_s", "new_tokens") };
        torch.manual_seed(1);
        var mlaCfg = ModelConfig.Tiny("mla", vocab: 64, hidden: 128, layers: 4, heads: 4) with { MaxPositionEmbeddings = 512 };
        var mhaCfg = mlaCfg with { Attention = "mha" };
        using var mla = new DeepSeekLM(mlaCfg); mla.to(device);
        using var mha = new DeepSeekLM(mhaCfg); mha.to(device);
        var variants = new (string Name, DeepSeekLM Model, MlaMode Mode, bool Cache)[]
        {
            ("mla-absorbed+cache", mla, MlaMode.Absorbed, true),
            ("mla-naive+cache", mla, MlaMode.Naive, true),
            ("mha+cache", mha, MlaMode.Auto, true),
            ("mla-no-cache", mla, MlaMode.Auto, false),
        };
        int reps = Math.Min(options.Repetitions, options.Quick ? 2 : 5);
        foreach (int b in batches)
            foreach (int n in newTokens)
                foreach (var v in variants)
                {
                    v.Model.SetMlaMode(v.Mode);
                    var prompts = Enumerable.Range(0, b).Select(i => Enumerable.Range(0, 16).Select(j => 3 + (i * 5 + j * 7) % 60).ToArray()).ToArray();
                    var opts = new SamplingOptions { MaxNewTokens = n, StopTokens = [], UseCache = v.Cache };
                    var t = Measure.Run(device, () => Generation.Generate(v.Model, prompts, opts), warmup: 1, repetitions: reps);
                    double tps = (double)b * n / t.MedianSeconds;
                    result.AddRow(v.Name).With("batch", b).With("new_tokens", n).Add("tokens_per_s", tps, "tokens/s").AddTiming(t);
                    Console.WriteLine($"  decode {v.Name} batch={b} new={n}: {tps:F0} tokens/s");
                }
        return result;
    }
}
