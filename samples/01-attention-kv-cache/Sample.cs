// Sample 01 — attention and the KV cache.
// A decoder generates one token at a time; without a cache every step recomputes keys and values of the
// whole sequence. The cache keeps them: each step computes one new K/V row per layer and reads the rest.
// This sample shows (1) cached decode gives exactly the logits of full recomputation, (2) how much
// faster it is, (3) how many bytes the cache holds for MHA, GQA and MQA.
using System.Diagnostics;
using TorchSharp;
using WhaleTech.Model;
using static TorchSharp.torch;
using WhaleTech.Attention;
using WhaleTech.Core;

namespace WhaleTech.Samples;

public static class S01AttentionKvCache
{
    public const string Title = "Attention and the KV cache (MHA, GQA, MQA)";

    public static void Run(SampleContext ctx)
    {
        torch.manual_seed(1);
        foreach (var kind in new[] { "mha", "gqa", "mqa" })
        {
            using var scope = torch.NewDisposeScope();
            var cfg = ModelConfig.Tiny(kind, vocab: 64, hidden: 128, layers: 4, heads: 8) with { NumKeyValueHeads = 2 };
            var model = new DeepSeekLM(cfg);
            model.to(ctx.Device);
            int newTokens = ctx.Quick ? 16 : 96;
            int[][] prompts = [[1, 10, 11, 12], [1, 20, 21, 22, 23, 24, 25, 26, 27, 28]];   // different lengths, one batch
            var opts = new SamplingOptions { MaxNewTokens = newTokens, StopTokens = [] };
            var sw = Stopwatch.StartNew();
            var cached = Generation.Generate(model, prompts, opts);
            double tCached = sw.Elapsed.TotalSeconds;
            sw.Restart();
            var recomputed = Generation.Generate(model, prompts, opts with { UseCache = false });
            double tFull = sw.Elapsed.TotalSeconds;
            bool same = cached.Completions.Zip(recomputed.Completions).All(p => p.First.SequenceEqual(p.Second));
            using var cache = model.CreateCache(1, 256);
            ctx.Out.WriteLine($"{kind.ToUpperInvariant(),-4} kv heads {StandardAttentionVariant.KvHeadsOf(cfg)}: same tokens with and without cache: {same}; " +
                              $"{2 * newTokens / tCached,6:F0} vs {2 * newTokens / tFull,6:F0} tokens/s; cache for 1 × 256 tokens: {cache.Bytes / 1024.0:F0} KiB");
        }
        ctx.Out.WriteLine("MHA caches 2·H·Dh numbers per token per layer, GQA 2·Hkv·Dh, MQA 2·Dh — sample 02 shows MLA's latent.");
    }
}
