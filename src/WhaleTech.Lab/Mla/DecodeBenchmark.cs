// Decode-step measurements of one attention layer (DeepSeek-V2 §2.1; DeepSeek-V3 §2.1.1 shapes):
// MHA, GQA-8, MQA, MLA-naive (per-head K/V cache) and MLA-absorbed (latent cache) over a batch × context grid,
// each with a cache pre-filled with random values (no prefill is run), plus
//   - device-to-device copy bandwidth (the memory roof the KV reads are compared against),
//   - prefill time of each variant,
//   - the absorbed-vs-materialized crossover in query length T over a latent cache, against the FLOP estimate
//       absorbed     2·H·T·[S·(2·Dc + Dr) + Dc·(Dn + Dv)]
//       materialized 2·H·[S·Dc·(Dn + Dv) + T·S·(Dn + Dr + Dv)]     (re-expand K/V from the latent, then attend)
//     which cross at T* = S·Dc·(Dn+Dv) / (S·(2·Dc − Dn − Dv) + Dc·(Dn+Dv))   (→ 171 for Dc 512, Dn = Dv = 128).
// The shared harness (Bench) turns the rows into JSON/Markdown/PNG; this file only measures.
//
// Shapes: B batch, T new tokens, S keys (context + new), D hidden, H heads, Dh head dim,
// Dc kv_lora_rank, Dq q_lora_rank, Dn qk_nope_head_dim, Dr qk_rope_head_dim, Dv v_head_dim.
using System.Diagnostics;
using TorchSharp;
using WhaleTech.Model;
using WhaleTech.Runtime;
using static TorchSharp.torch;
using WhaleTech.Core;

using WhaleTech.Attention;

using WhaleTech.Lab.Bench;

namespace WhaleTech.Lab.Mla;

public enum DecodeVariant { Mha, Gqa8, Mqa, MlaNaive, MlaAbsorbed, MlaAbsorbedSdpa }

/// <summary>The attention shapes of one layer.</summary>
public sealed record AttentionShapes(string Name, int Hidden, int Heads, int HeadDim, int GqaKvHeads, int? QLoraRank, int KvLoraRank, int RopeDim, int NopeDim, int VDim)
{
    /// <summary>DeepSeek-V3: D 7168, H 128, Dq 1536, Dc 512, Dr 64, Dn 128, Dv 128 (MHA/GQA/MQA with Dh 128).</summary>
    public static AttentionShapes V3 { get; } = new("deepseek-v3", 7168, 128, 128, 8, 1536, 512, 64, 128, 128);
    /// <summary>DeepSeek-V2-Lite: D 2048, H 16, no query compression, Dc 512, Dr 64, Dn 128, Dv 128.</summary>
    public static AttentionShapes V2Lite { get; } = new("deepseek-v2-lite", 2048, 16, 128, 8, null, 512, 64, 128, 128);

    /// <summary>A one-layer config of this shape for <paramref name="variant"/>.</summary>
    public ModelConfig Config(DecodeVariant variant, int maxPositions) => new ModelConfig
    {
        VocabSize = 16, HiddenSize = Hidden, IntermediateSize = 16, NumHiddenLayers = 1, NumAttentionHeads = Heads,
        NumKeyValueHeads = variant == DecodeVariant.Gqa8 ? GqaKvHeads : Heads, HeadDim = HeadDim,
        QLoraRank = QLoraRank, KvLoraRank = KvLoraRank, QkRopeHeadDim = RopeDim, QkNopeHeadDim = NopeDim, VHeadDim = VDim,
        MaxPositionEmbeddings = maxPositions,
        Attention = variant switch { DecodeVariant.Mha => "mha", DecodeVariant.Gqa8 => "gqa", DecodeVariant.Mqa => "mqa", _ => "mla" },
    }.Validate();
}

/// <summary>What to measure. Dtype: Float32 on CPU (bf16 GEMMs are slow there), BFloat16 on CUDA.</summary>
public sealed record DecodeGrid(AttentionShapes Shapes, long[] Batches, long[] Contexts, DecodeVariant[] Variants,
    ScalarType Dtype, int Warmup = 2, int Iterations = 5, double MemoryBudgetGiB = 8)
{
    public static DecodeVariant[] AllVariants => Enum.GetValues<DecodeVariant>();
    /// <summary>Small CPU grid (V2-Lite shapes, fp32): under a minute on 2 idle cores.</summary>
    public static DecodeGrid CpuDefault => new(AttentionShapes.V2Lite, [1, 4], [256, 1024], AllVariants, ScalarType.Float32, 1, 3, 4);
    /// <summary>The CUDA grid: V3 shapes, bf16, batch up to 128, context up to 32K, median of 20.</summary>
    public static DecodeGrid CudaV3 => new(AttentionShapes.V3, [1, 16, 64, 128], [4096, 32768], AllVariants, ScalarType.BFloat16, 3, 20, 70);
}

/// <summary>One measured decode step.</summary>
public sealed record DecodeRow(string Shapes, string Variant, long Batch, long Context, string Dtype,
    double MedianMs, double TokensPerSecond, long KvBytesRead, double KvGBps, string? Skipped = null);

/// <summary>One prefill of T tokens from an empty cache.</summary>
public sealed record PrefillRow(string Shapes, string Variant, long Batch, long Tokens, double MedianMs, double TokensPerSecond);

/// <summary>Absorbed vs materialized for T new tokens over a latent cache of S = context + T keys.</summary>
public sealed record CrossoverRow(long Context, long NewTokens, double AbsorbedMs, double MaterializedMs, double AbsorbedGflop, double MaterializedGflop);

public static class DecodeBenchmark
{
    /// <summary>Median milliseconds of <paramref name="step"/> after <paramref name="warmup"/> runs (synchronizing the device):
    /// the one timer of the benchmarks, Bench/Measure.cs.</summary>
    public static double MedianMs(Device device, int warmup, int iterations, Action step) => Measure.Run(device, step, warmup, iterations).MedianMs;

    /// <summary>Builds the one attention layer of <paramref name="variant"/> on <paramref name="device"/>.</summary>
    public static AttentionLayer BuildLayer(AttentionShapes shapes, DecodeVariant variant, int maxPositions, ScalarType dtype, Device device)
    {
        var cfg = shapes.Config(variant, maxPositions);
        var rope = new RotaryEmbedding(cfg.AttentionVariant.RopeDim(cfg), maxPositions, cfg.RopeTheta, null);
        var layer = cfg.AttentionVariant.Create(cfg, rope, Linears.Standard(), "self_attn");
        if (layer is MultiHeadLatentAttention mla)
        {
            mla.Mode = variant == DecodeVariant.MlaNaive ? MlaMode.Naive : MlaMode.Absorbed;
            mla.UseSdpa = variant == DecodeVariant.MlaAbsorbedSdpa;      // the absorbed attention through fused SDPA
        }
        layer.to(device).to(dtype);
        layer.eval();
        return layer;
    }

    /// <summary>Bytes per token of one layer's cache for this variant (KvAccounting).</summary>
    public static long KvBytesPerToken(AttentionShapes shapes, DecodeVariant variant, ScalarType dtype)
    {
        var cfg = shapes.Config(variant, 16);
        var layout = KvAccounting.LayoutOf(cfg, variant == DecodeVariant.MlaNaive ? MlaMode.Naive : MlaMode.Absorbed);
        return KvAccounting.ElementsPerTokenPerLayer(KvShape.From(cfg), layout) * ElementSize(dtype);
    }

    static long ElementSize(ScalarType dtype) => dtype switch { ScalarType.Float32 => 4, ScalarType.Float64 => 8, _ => 2 };

    /// <summary>A cache of <paramref name="context"/> random tokens (+1 free slot) for one layer.</summary>
    public static InferenceCache FilledCache(AttentionLayer layer, long batch, long context, ScalarType dtype, Device device)
    {
        var cache = new InferenceCache(batch, context + 1, device, _ => layer.CreateCache(batch, context + 1, dtype, device), 1);
        using (torch.no_grad())
        {
            foreach (var t in CacheTensors(cache.Layers[0])) t.normal_();
            cache.KeyValid.fill_(true);
        }
        cache.Advance(context);
        return cache;
    }

    static Tensor[] CacheTensors(ILayerCache c) => c switch
    {
        StandardAttention.KvCache kv => [kv.K, kv.V],
        MultiHeadLatentAttention.MaterializedCache m => [m.K, m.V],
        MultiHeadLatentAttention.LatentCache l => [l.KV],
        _ => throw new InvalidOperationException("unknown cache kind"),
    };

    /// <summary>One decode step (T = 1) per (variant, batch, context) of the grid. Points whose cache would
    /// exceed grid.MemoryBudgetGiB are returned as skipped rows.</summary>
    public static IReadOnlyList<DecodeRow> Run(Device device, DecodeGrid grid)
    {
        if (grid.Batches.Length == 0 || grid.Batches.Any(b => b < 1)) throw new WhaleArgumentException("batches", grid.Batches, "must be one or more positive batch sizes");
        if (grid.Contexts.Length == 0 || grid.Contexts.Any(c => c < 1)) throw new WhaleArgumentException("contexts", grid.Contexts, "must be one or more positive contexts");
        Guard.Positive("iterations", grid.Iterations);   // the median of zero timings does not exist
        Guard.NonNegative("warmup", grid.Warmup);
        Guard.Positive("memory_budget_gib", grid.MemoryBudgetGiB);   // points above it are skipped
        Backend.Initialize();
        var rows = new List<DecodeRow>();
        int maxPositions = (int)grid.Contexts.Max() + 2;
        string dtypeName = grid.Dtype.ToString();
        foreach (var variant in grid.Variants)
        {
            using var layer = BuildLayer(grid.Shapes, variant, maxPositions, grid.Dtype, device);
            foreach (long batch in grid.Batches)
                foreach (long context in grid.Contexts)
                {
                    long kvBytes = KvBytesPerToken(grid.Shapes, variant, grid.Dtype) * batch * context;
                    if (kvBytes > grid.MemoryBudgetGiB * (1L << 30))
                    {
                        rows.Add(new DecodeRow(grid.Shapes.Name, variant.ToString(), batch, context, dtypeName, double.NaN, double.NaN, kvBytes, double.NaN,
                            $"cache {kvBytes / (double)(1L << 30):F1} GiB > budget {grid.MemoryBudgetGiB} GiB"));
                        continue;
                    }
                    using var scope = torch.NewDisposeScope();
                    using var noGrad = torch.no_grad();
                    using var cache = FilledCache(layer, batch, context, grid.Dtype, device);
                    var x = torch.randn(batch, 1, grid.Shapes.Hidden, dtype: grid.Dtype, device: device);     // [B, 1, D]
                    var ctx = new AttentionContext
                    {
                        Positions = torch.full(batch, 1, context, dtype: ScalarType.Int64, device: device), // [B, 1]
                        Mask = AttentionContext.BuildMask(cache.KeyValid, context, 1),                         // [B, 1, 1, S]
                        Cache = cache,
                    };
                    double ms = MedianMs(device, grid.Warmup, grid.Iterations, () =>
                    {
                        using var step = torch.NewDisposeScope();
                        layer.forward(x, ctx);
                    });
                    rows.Add(new DecodeRow(grid.Shapes.Name, variant.ToString(), batch, context, dtypeName, ms, batch / (ms / 1000), kvBytes, kvBytes / (ms / 1000) / 1e9));
                }
        }
        return rows;
    }

    /// <summary>Device-to-device copy bandwidth in GB/s, counting bytes read plus bytes written (median of N).</summary>
    public static double CopyBandwidthGBps(Device device, long bytes = 256L << 20, int warmup = 2, int iterations = 10)
    {
        Backend.Initialize();
        using var scope = torch.NewDisposeScope();
        var src = torch.ones(bytes / 4, dtype: ScalarType.Float32, device: device);
        var dst = torch.empty_like(src);
        double ms = MedianMs(device, warmup, iterations, () => dst.copy_(src));
        return 2.0 * bytes / (ms / 1000) / 1e9;
    }

    /// <summary>Prefill of <paramref name="tokens"/> tokens into an empty cache, per variant (MLA-absorbed runs
    /// in auto mode, so prefill materializes as DeepSeek's policy does).</summary>
    public static IReadOnlyList<PrefillRow> Prefill(Device device, AttentionShapes shapes, long batch, long tokens, ScalarType dtype, int warmup = 1, int iterations = 3, DecodeVariant[]? variants = null)
    {
        Backend.Initialize();
        var rows = new List<PrefillRow>();
        foreach (var variant in variants ?? DecodeGrid.AllVariants)
        {
            using var layer = BuildLayer(shapes, variant, (int)tokens + 1, dtype, device);
            if (layer is MultiHeadLatentAttention mla && variant is DecodeVariant.MlaAbsorbed or DecodeVariant.MlaAbsorbedSdpa) mla.Mode = MlaMode.Auto;
            using var scope = torch.NewDisposeScope();
            using var noGrad = torch.no_grad();
            using var cache = new InferenceCache(batch, tokens, device, _ => layer.CreateCache(batch, tokens, dtype, device), 1);
            cache.KeyValid.fill_(true);
            var x = torch.randn(batch, tokens, shapes.Hidden, dtype: dtype, device: device);             // [B, T, D]
            var ctx = new AttentionContext
            {
                Positions = torch.arange(tokens, device: device).unsqueeze(0).expand(batch, tokens),   // [B, T]
                Mask = AttentionContext.BuildMask(cache.KeyValid, 0, tokens), Cache = cache,
            };
            double ms = MedianMs(device, warmup, iterations, () => { using var s = torch.NewDisposeScope(); layer.forward(x, ctx); });
            rows.Add(new PrefillRow(shapes.Name, variant.ToString(), batch, tokens, ms, batch * tokens / (ms / 1000)));
        }
        return rows;
    }

    /// <summary>Analytic FLOPs of one MLA step with T new tokens over S keys, per sequence: (absorbed, materialized).</summary>
    public static (double Absorbed, double Materialized) MlaFlops(AttentionShapes s, long T, long S)
    {
        double H = s.Heads, Dc = s.KvLoraRank, Dr = s.RopeDim, Dn = s.NopeDim, Dv = s.VDim;
        return (2 * H * T * (S * (2 * Dc + Dr) + Dc * (Dn + Dv)),
                2 * H * (S * Dc * (Dn + Dv) + T * S * (Dn + Dr + Dv)));
    }

    /// <summary>The query length where the FLOP estimates cross: absorbing is cheaper below it.</summary>
    public static double AnalyticCrossover(AttentionShapes s, long S)
    {
        double Dc = s.KvLoraRank, Dn = s.NopeDim, Dv = s.VDim;
        return S * Dc * (Dn + Dv) / (S * (2 * Dc - Dn - Dv) + Dc * (Dn + Dv));
    }

    /// <summary>Absorbed vs materialize-from-latent for T new tokens over a latent cache holding <paramref name="context"/> tokens.</summary>
    public static IReadOnlyList<CrossoverRow> Crossover(Device device, AttentionShapes shapes, long context, long[] newTokens, ScalarType dtype, long batch = 1, int warmup = 1, int iterations = 3)
    {
        Backend.Initialize();
        var rows = new List<CrossoverRow>();
        long maxT = newTokens.Max();
        using var layer = (MultiHeadLatentAttention)BuildLayer(shapes, DecodeVariant.MlaAbsorbed, (int)(context + maxT + 1), dtype, device);
        foreach (long T in newTokens)
        {
            using var scope = torch.NewDisposeScope();
            using var noGrad = torch.no_grad();
            using var cache = new InferenceCache(batch, context + T, device, _ => layer.CreateCache(batch, context + T, dtype, device), 1);
            ((MultiHeadLatentAttention.LatentCache)cache.Layers[0]).KV.normal_();
            cache.KeyValid.fill_(true);
            cache.Advance(context);
            var x = torch.randn(batch, T, shapes.Hidden, dtype: dtype, device: device);                  // [B, T, D]
            var ctx = new AttentionContext
            {
                Positions = torch.arange(context, context + T, device: device).unsqueeze(0).expand(batch, T),
                Mask = AttentionContext.BuildMask(cache.KeyValid, context, T), Cache = cache,
            };
            double Time(MlaMode mode, long crossover)
            {
                layer.Mode = mode; layer.AutoCrossover = crossover;
                return MedianMs(device, warmup, iterations, () => { using var s = torch.NewDisposeScope(); layer.forward(x, ctx); });
            }
            double absorbed = Time(MlaMode.Absorbed, long.MaxValue);
            double materialized = Time(MlaMode.Auto, 0);   // auto with crossover 0 = always materialize from the latent
            var (fa, fm) = MlaFlops(shapes, T, context + T);
            rows.Add(new CrossoverRow(context, T, absorbed, materialized, fa * batch / 1e9, fm * batch / 1e9));
        }
        return rows;
    }

    /// <summary>The smallest measured T where materializing is at least as fast as absorbing (null: never in range).</summary>
    public static long? MeasuredCrossover(IReadOnlyList<CrossoverRow> rows)
        => rows.OrderBy(r => r.NewTokens).FirstOrDefault(r => r.MaterializedMs <= r.AbsorbedMs)?.NewTokens;
}
