// Sample 03 — MLA vs GQA (and MHA, MQA): KV-cache memory and decode speed.
// Memory: DeepSeek-V2 Table 1 (§2.1.4) per token per layer — MHA 2·n_h·d_h, GQA 2·n_g·d_h, MQA 2·d_h,
// MLA (d_c + d_h^R) (eqs. 41/43: only c^KV and the shared RoPE key k^R are cached). `KvAccounting` does the
// arithmetic for DeepSeek-V3's real shapes; nothing is allocated.
// Speed: one decode step (T = 1 new token over C cached tokens) of ONE attention layer at small shapes,
// timed with `DecodeBenchmark.Run` (median of a few repetitions). On a CPU the step is compute-bound at
// these sizes, so the memory ranking need not be the speed ranking; `whale mla bench` has the full grid.
//
// Shapes: B batch, C context (cached tokens), H heads, Hkv KV heads (GQA groups), Dh head dim,
// Dc kv_lora_rank (latent), Dr RoPE dim.
using WhaleTech.Attention;
using WhaleTech.Model;
using static TorchSharp.torch;
using WhaleTech.Core;
using WhaleTech.Lab.Mla;

namespace WhaleTech.Samples;

public static class S03MlaVsGqa
{
    public const string Title = "MLA vs GQA: KV-cache memory and decode speed";

    public static void Run(SampleContext ctx)
    {
        // 1. Memory at DeepSeek-V3's shapes (61 layers, 128 heads of 128, d_c 512, d_h^R 64), bf16, one 32K sequence.
        var v3 = KvShape.From(ModelPresets.DeepSeekV3);
        var rows = KvAccounting.Table(v3, "bf16", batch: 1, context: 32768);
        ctx.Out.WriteLine("KV cache at DeepSeek-V3 shapes, bf16, batch 1 × 32768 tokens (KvAccounting, DeepSeek-V2 Table 1):");
        ctx.Out.WriteLine($"  {"attention",-28} {"elements/token/layer",20} {"cache GiB",10} {"max context in 80 GiB",22}");
        foreach (var r in rows)
            ctx.Out.WriteLine($"  {r.Attention,-28} {r.ElementsPerTokenPerLayer,20:N0} {r.CacheBytes / (1L << 30),10:F2} {r.MaxContext,22:N0}");
        long mha = rows.First(r => r.Layout == KvLayout.Mha).ElementsPerTokenPerLayer;
        long gqa = rows.First(r => r.Layout == KvLayout.Gqa).ElementsPerTokenPerLayer;
        long mla = rows.First(r => r.Layout == KvLayout.MlaLatent).ElementsPerTokenPerLayer;
        ctx.Out.WriteLine($"MLA latent keeps {mla} numbers per token per layer: {(double)mha / mla:F1}× fewer than MHA, {(double)gqa / mla:F1}× fewer than GQA-8.");
        ctx.Out.WriteLine($"MLA latent is smaller than GQA-8: {mla < gqa}");

        // 2. Decode step timing of one layer at small shapes (D 512, 8 heads of 64, GQA 2 KV heads, d_c 128, d_h^R 32).
        var small = new AttentionShapes("small", Hidden: 512, Heads: 8, HeadDim: 64, GqaKvHeads: 2, QLoraRank: null, KvLoraRank: 128, RopeDim: 32, NopeDim: 64, VDim: 64);
        long context = ctx.Quick ? 256 : 2048;
        long batch = ctx.Quick ? 1 : 4;
        var grid = new DecodeGrid(small, [batch], [context], DecodeGrid.AllVariants, ScalarType.Float32, Warmup: 1, Iterations: ctx.Quick ? 3 : 10, MemoryBudgetGiB: 2);
        var decode = DecodeBenchmark.Run(ctx.Device, grid);
        ctx.Out.WriteLine($"\nOne decode step of one layer, batch {batch}, context {context}, fp32, {ctx.Device.type} (median of {grid.Iterations}):");
        ctx.Out.WriteLine($"  {"variant",-12} {"KV bytes/token",14} {"ms/step",9} {"tokens/s",10}");
        foreach (var d in decode)
            ctx.Out.WriteLine($"  {d.Variant,-12} {DecodeBenchmark.KvBytesPerToken(small, Enum.Parse<DecodeVariant>(d.Variant), ScalarType.Float32),14:N0} {d.MedianMs,9:F3} {d.TokensPerSecond,10:F0}");

        var plt = new ScottPlot.Plot();
        var bars = decode.Select((d, i) => new ScottPlot.Bar { Position = i, Value = d.MedianMs }).ToArray();
        plt.Add.Bars(bars);
        plt.Axes.Bottom.SetTicks(decode.Select((_, i) => (double)i).ToArray(), decode.Select(d => d.Variant).ToArray());
        plt.Axes.Left.Label.Text = "ms per decode step (median)";
        plt.Title($"One attention layer, batch {batch}, context {context}, {ctx.Device.type}");
        var path = Path.Combine(ctx.OutDir, "decode_ms.png");
        plt.SavePng(path, 640, 400);
        ctx.Out.WriteLine($"Plot: {path}. Timings vary run to run; the full grid: whale mla bench --device {ctx.Device.type.ToString().ToLowerInvariant()}.");
    }
}
