// `rollout`: GRPO rollout throughput — sampled (τ = 1) batched generation of the GRPO policy (the default
// `whale grpo` model: PolicyModel.Config(new GrpoOptions())) for prompts × G sequences, with the KV cache and with
// full recomputation every step (issue 6: "rollout with the KV cache ≥ 10x the tokens/s of recomputation at 256
// new tokens on CUDA"). Stop tokens are off so every sequence generates exactly the requested number of tokens;
// the GRPO rollout (Grpo/Rollout.cs) runs the same cached forward, only its sampler differs (per-sample streams).
// tokens/s = sequences · new tokens / median wall time; speedup = cached tokens/s / recompute tokens/s.
using TorchSharp;
using WhaleTech.Lab.Bench;
using WhaleTech.Grpo;
using WhaleTech.Model;
using WhaleTech.Runtime;
using static TorchSharp.torch;
using WhaleTech.Core;

namespace WhaleTech.Benchmarks;

public sealed class RolloutSuite : ISuite
{
    public string Name => "rollout";
    public string Description =>
        "GRPO rollout: sampled batched generation (τ = 1, no stop tokens) of the default GRPO policy for prompts × G sequences, " +
        "tokens/s with the KV cache vs full recomputation each step, and the speed-up.";

    public BenchmarkResult Run(Device device, SuiteOptions options)
    {
        bool cuda = device.type == DeviceType.CUDA;
        int sequences = options.Quick ? 4 : cuda ? 128 : 16;             // 16 prompts × G = 8 on CUDA, 2 × 8 on CPU
        int[] newTokens = options.Quick ? [16] : [64, 256];
        var grpo = new GrpoOptions();
        var cfg = PolicyModel.Config(grpo) with { MaxPositionEmbeddings = 512 };
        using var policy = PolicyModel.Create(cfg, seed: 1, device);
        var tok = PolicyModel.Tokenizer();
        var prompts = Enumerable.Range(0, sequences).Select(i => (int[])[CharTokenizer.Bos, .. tok.Encode($"{10 + i}+{27 + 3 * i}=")]).ToArray(); // addition prompts
        var result = new BenchmarkResult(Name, Description, MachineInfo.Collect(device)) { Plot = new PlotSpec("tokens_per_s", "new_tokens") };
        int reps = options.Quick ? 2 : 3;
        foreach (int n in newTokens)
        {
            double cachedTps = 0;
            foreach (bool cache in new[] { true, false })
            {
                var opts = new SamplingOptions { MaxNewTokens = n, Temperature = 1.0, StopTokens = [], UseCache = cache };
                var gen = new torch.Generator(7, device);
                var t = Measure.Run(device, () => Generation.Generate(policy, prompts, opts, gen), warmup: 1, repetitions: reps);
                double tps = (double)sequences * n / t.MedianSeconds;
                if (cache) cachedTps = tps;
                var row = result.AddRow(cache ? "kv-cache" : "recompute").With("sequences", sequences).With("new_tokens", n)
                    .Add("tokens_per_s", tps, "tokens/s").AddTiming(t);
                if (!cache) row.Add("cache_speedup", cachedTps / tps, "x");
                Console.WriteLine($"  rollout {(cache ? "kv-cache" : "recompute")} sequences={sequences} new={n}: {tps:F0} tokens/s" +
                                  (cache ? "" : $" (cache is {cachedTps / tps:F1}x faster)"));
            }
        }
        return result;
    }
}
