// `fp8`: what FP8 simulation costs (issue 5 §8).
//   quantize   FakeQuantize (quantize + dequantize) of an [n, n] float32 tensor per granularity
//              → GB/s = 4·n² input bytes / median time
//   linear     forward + backward of an Fp8Linear ([T, n] x [n, n], T = n tokens) per recipe
//              → ms, and the ratio to the bf16 recipe (the issue asks ≤ 3x on CPU, ≤ 2x on the H100)
//   train step one optimizer step (forward, backward, AdamW) of a small DeepSeekLM whose projections are Fp8Linear,
//              per recipe, with FP8 casts by libtorch's float8 dtypes (native) and by the float32-op emulation
//              → ms and the ratio to the bf16 recipe (issue 5: ≤ 3x on CPU, ≤ 2x on the H100)
//   memory     bytes per recipe for an [n, n] layer: weights as stored for the GEMM (FP8 1 byte + one float32
//              scale per 128×128 block / per tensor; BF16 2 bytes), the activation saved for backward
//              (FP8 1 byte + a scale per 1×128 tile), FP32 master weights and AdamW moments m + v: 2 × 4 bytes in
//              FP32, 2 × 2 bytes in BF16 (DeepSeek-V3 §3.3; Training.AdamWOptimizer.StateBytes measures the same).
//              Computed from shapes (the simulator itself keeps float32 values; real 1-byte storage is
//              Fp8Cast.ToStorage).
// Simulated FP8 runs on float32 tensor ops, so an FP8 step is not faster than BF16 there; `hybrid-tensor-real`
// runs the same per-tensor recipe on real float8 storage with torch._scaled_mm (Fp8ScaledMatmul), the path that
// uses the FP8 tensor cores on Hopper; `deepseek-v3-real` runs DeepSeek-V3's 1×128 / 128×128 scales on real float8
// (Fp8BlockScaledMatmul: one _scaled_mm per 128-wide K block plus a float32 scale-and-add over the output per block).
using TorchSharp;
using WhaleTech.Lab.Bench;
using WhaleTech.Fp8;
using WhaleTech.Runtime;
using static TorchSharp.torch;
using WhaleTech.Lab.Fp8;

namespace WhaleTech.Benchmarks;

public sealed class Fp8Suite : ISuite
{
    public string Name => "fp8";
    public string Description =>
        "Simulated FP8: quantize+dequantize throughput per granularity (GB/s of float32 input), Fp8Linear forward+backward " +
        "time per recipe (ms; ratio to the bf16 recipe) and per-recipe memory of an n×n layer (bytes, from shapes).";

    public BenchmarkResult Run(Device device, SuiteOptions options)
    {
        bool cuda = device.type == DeviceType.CUDA;
        int[] sizes = (cuda, options.Quick) switch
        {
            (true, false) => [1024, 2048, 4096, 8192],
            (true, true) => [1024],
            (false, false) => [256, 512, 1024, 2048],
            (false, true) => [256],
        };
        var result = new BenchmarkResult(Name, Description, MachineInfo.Collect(device)) { Plot = new PlotSpec("ms", "n", LogX: true, LogY: true) };
        foreach (var row in Quantize(device, sizes, options)) result.Rows.Add(row);
        foreach (var row in Linear(device, sizes, options)) result.Rows.Add(row);
        foreach (var row in TrainStep(device, options)) result.Rows.Add(row);
        foreach (var row in Memory(sizes[^1])) result.Rows.Add(row);
        return result;
    }

    /// <summary>Quantize + dequantize GB/s per granularity (E4M3).</summary>
    public static IEnumerable<BenchmarkRow> Quantize(Device device, int[] sizes, SuiteOptions options)
    {
        foreach (var g in new[] { Fp8Granularity.PerTensor, Fp8Granularity.PerRow, Fp8Granularity.Tile, Fp8Granularity.Block })
            foreach (int n in sizes)
            {
                using var x = randn(n, n, device: device);                                  // [n, n]
                var t = Measure.Run(device, () => Fp8Quantizer.FakeQuantize(x, Fp8Format.E4M3, g), options.Warmup, options.Repetitions);
                double bytes = 4.0 * n * n;
                Console.WriteLine($"  quantize {Fp8Granularities.Name(g)} n={n}: {bytes / t.MedianSeconds / 1e9:F2} GB/s, {t}");
                yield return new BenchmarkRow("quantize " + Fp8Granularities.Name(g)).With("n", n)
                    .Add("gbps", bytes / t.MedianSeconds / 1e9, "GB/s").Add("ms", t.MedianMs, "ms").AddTiming(t);
            }
    }

    /// <summary>Fp8Linear forward+backward per recipe; ratio to bf16 at the same size.</summary>
    public static IEnumerable<BenchmarkRow> Linear(Device device, int[] sizes, SuiteOptions options)
    {
        foreach (int n in sizes)
        {
            double? bf16Ms = null;
            foreach (var recipe in new[] { Fp8Recipe.Bf16, Fp8Recipe.Fp32, Fp8Recipe.DeepSeekV3, Fp8Recipe.DeepSeekV3Real, Fp8Recipe.HybridPerTensor, Fp8Recipe.HybridPerTensorReal })
            {
                using var lin = new Fp8Linear(n, n, false, recipe);
                lin.to(device);
                using var x = randn(n, n, device: device).requires_grad_(true);           // [T = n, n]
                var t = Measure.Run(device, () =>
                {
                    var y = lin.forward(x);
                    y.sum().backward();
                    lin.weight.grad?.zero_();
                }, options.Warmup, options.Repetitions);
                bf16Ms ??= t.MedianMs;
                Console.WriteLine($"  linear {recipe.Name} n={n}: {t.MedianMs:F2} ms ({t.MedianMs / bf16Ms.Value:F2}x bf16)");
                yield return new BenchmarkRow("linear " + recipe.Name).With("n", n)
                    .Add("ms", t.MedianMs, "ms").Add("ratio_to_bf16", t.MedianMs / bf16Ms.Value, "x").AddTiming(t);
            }
        }
    }

    /// <summary>One LmTrainer step of a DeepSeekLM built through Fp8Linears.Factory per recipe; ratio to bf16.</summary>
    public static IEnumerable<BenchmarkRow> TrainStep(Device device, SuiteOptions options)
    {
        bool cuda = device.type == DeviceType.CUDA;
        int hidden = cuda ? 1024 : 256, layers = 2, batch = 8, seq = cuda ? 512 : 64;
        var nativeV3 = Fp8Recipe.DeepSeekV3;
        var emulatedV3 = nativeV3 with { Name = "deepseek-v3 (emulated cast)", Scaling = nativeV3.Scaling with { Cast = Fp8CastImplementation.Emulated } };
        double? bf16Ms = null;
        foreach (var recipe in new[] { Fp8Recipe.Bf16, nativeV3, emulatedV3, Fp8Recipe.DeepSeekV3Real, Fp8Recipe.HybridPerTensor, Fp8Recipe.HybridPerTensorReal })
        {
            torch.manual_seed(1);
            var config = Core.ModelConfig.Tiny("mla", vocab: 64, hidden: hidden, layers: layers, heads: 4);
            using var model = new Model.DeepSeekLM(config, Fp8Linears.Factory(recipe, initStd: config.InitializerRange));
            model.to(device);
            var trainer = new Training.LmTrainer(model, new Training.TrainOptions { Steps = 1_000_000, BatchSize = batch, SequenceLength = seq, WarmupSteps = 1 }) { Warn = _ => { } };
            using var x = randint(0, 64, [batch, seq], dtype: ScalarType.Int64, device: device);     // [B, T]
            using var y = randint(0, 64, [batch, seq], dtype: ScalarType.Int64, device: device);     // [B, T]
            var t = Measure.Run(device, () => trainer.TrainStep(x, y), options.Warmup, options.Repetitions);
            bf16Ms ??= t.MedianMs;
            Console.WriteLine($"  train step {recipe.Name} D={hidden}: {t.MedianMs:F2} ms ({t.MedianMs / bf16Ms.Value:F2}x bf16)");
            yield return new BenchmarkRow("train step " + recipe.Name).With("n", hidden)
                .Add("ms", t.MedianMs, "ms").Add("ratio_to_bf16", t.MedianMs / bf16Ms.Value, "x").AddTiming(t);
        }
    }

    /// <summary>Memory of one [n, n] layer with n tokens per recipe, in bytes, from shapes.</summary>
    public static IEnumerable<BenchmarkRow> Memory(int n)
    {
        long w = (long)n * n, tiles = (long)n * ((n + 127) / 128), blocks = (long)((n + 127) / 128) * ((n + 127) / 128);
        foreach (var recipe in new[] { Fp8Recipe.Bf16, Fp8Recipe.DeepSeekV3, Fp8Recipe.HybridPerTensor })
        {
            (double weight, double activation) = recipe.Name switch
            {
                "bf16" => (2.0 * w, 2.0 * w),
                "deepseek-v3" => (w + 4.0 * blocks, w + 4.0 * tiles),
                _ => (w + 4.0, w + 4.0),
            };
            yield return new BenchmarkRow("memory " + recipe.Name).With("n", n)
                .Add("gemm_weight_bytes", weight, "B").Add("saved_activation_bytes", activation, "B")
                .Add("master_weight_bytes", 4.0 * w, "B")
                .Add("adam_moment_bytes", Training.MomentPrecisions.StateBytesPerElement(Training.MomentPrecision.Fp32) * (double)w, "B")        // FP32 m + v
                .Add("adam_moment_bytes_bf16", Training.MomentPrecisions.StateBytesPerElement(Training.MomentPrecision.Bf16) * (double)w, "B");  // BF16 m + v
        }
    }
}
