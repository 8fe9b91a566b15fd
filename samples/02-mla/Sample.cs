// Sample 02 — multi-head latent attention (DeepSeek-V2 §2.1, eqs. 9–19).
// MLA caches one normalized latent c^KV (kv_lora_rank numbers) plus one shared RoPE key per token, and
// rebuilds per-head keys and values from it: K = W_UK c, V = W_UV c. Decode can skip the rebuild by
// folding W_UK into the query and W_UV into the output ("absorbed"). This sample checks that the naive
// (materialized) and absorbed paths give the same logits, and compares the cache sizes.
using TorchSharp;
using WhaleTech.Attention;
using WhaleTech.Model;
using static TorchSharp.torch;
using WhaleTech.Core;

namespace WhaleTech.Samples;

public static class S02Mla
{
    public const string Title = "Multi-head latent attention: naive vs absorbed decoding";

    public static void Run(SampleContext ctx)
    {
        using var scope = torch.NewDisposeScope();
        torch.manual_seed(2);
        var cfg = ModelConfig.Tiny("mla", vocab: 64, hidden: 128, layers: 2, heads: 8) with { KvLoraRank = 32, QkNopeHeadDim = 16, QkRopeHeadDim = 8, VHeadDim = 16, QLoraRank = 48 };
        var model = new DeepSeekLM(cfg);
        model.to(ctx.Device);
        int[][] prompts = [[1, 5, 9, 13, 17], [1, 30, 31]];
        var opts = new SamplingOptions { MaxNewTokens = ctx.Quick ? 8 : 32, StopTokens = [] };
        var results = new Dictionary<MlaMode, GenerationResult>();
        foreach (var mode in new[] { MlaMode.Naive, MlaMode.Absorbed })
        {
            model.SetMlaMode(mode);
            results[mode] = Generation.Generate(model, prompts, opts);
            using var cache = model.CreateCache(1, 256);
            ctx.Out.WriteLine($"{mode,-9}: cache for 1 × 256 tokens = {cache.Bytes / 1024.0,7:F0} KiB; first completion {string.Join(" ", results[mode].Completions[0].Take(8))} …");
        }
        bool same = results[MlaMode.Naive].Completions.Zip(results[MlaMode.Absorbed].Completions).All(p => p.First.SequenceEqual(p.Second));
        ctx.Out.WriteLine($"Naive and absorbed decoding produce the same tokens: {same}");
        ctx.Out.WriteLine($"Per token per layer: materialized {cfg.NumAttentionHeads * (cfg.QkNopeHeadDim + cfg.QkRopeHeadDim + cfg.VHeadDim)} numbers, latent {cfg.KvLoraRank + cfg.QkRopeHeadDim}.");
        ctx.Out.WriteLine("At DeepSeek-V3's shapes that is 40,960 vs 576 numbers (`whale kv --model deepseek-v3`).");
    }
}
