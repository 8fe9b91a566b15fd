// Sample 07 — FP8 training, simulated: BF16 vs the DeepSeek-V3 recipe (§3.3, Figure 6).
// DeepSeek-V3 runs the three GEMMs of every linear layer in FP8 — forward y = x·Wᵀ (Fprop), activation
// gradient dx = dy·W (Dgrad), weight gradient dW = dyᵀ·x (Wgrad) — with E4M3 everywhere, activations and
// gradients scaled per 1×128 tile and weights per 128×128 block, and the products accumulated with
// promotion to FP32 every 128 elements (§3.3.2). Master weights, optimizer state, norms, the router and
// the output head stay in high precision. WhaleTech simulates this on any device: operands are rounded to
// exact FP8 values (Fp8Quantizer) and the GEMM runs in fp32 (Fp8LinearFunction).
// The DeepSeek-V3 claim: relative loss gap vs BF16 below 0.25% (at scale, trillions of tokens).
//
// Shapes: x [N, K] tokens × in-features, W [M, K], y [N, M].
using WhaleTech.Fp8;
using static TorchSharp.torch;
using WhaleTech.Lab.Fp8;

namespace WhaleTech.Samples;

public static class S07Fp8Training
{
    public const string Title = "FP8 training: BF16 vs the DeepSeek-V3 recipe on a tiny LM";

    public static void Run(SampleContext ctx)
    {
        // 1. One linear layer: how far is each recipe's output from fp32?
        using (var scope = NewDisposeScope())
        {
            manual_seed(7);
            var x = randn(64, 256);                                      // [N, K]
            var reference = new Fp8Linear(256, 128, hasBias: false, Fp8Recipe.Fp32);
            var y32 = reference.forward(x);                              // [N, M]
            ctx.Out.WriteLine("One 256→128 linear layer, output SQNR against fp32:");
            foreach (var recipe in new[] { Fp8Recipe.Bf16, Fp8Recipe.DeepSeekV3, Fp8Recipe.HybridPerTensor })
            {
                reference.Recipe = recipe;
                ctx.Out.WriteLine($"  {recipe.Name,-14} {Fp8Lab.Sqnr(y32, reference.forward(x).to_type(ScalarType.Float32)),6:F1} dB   ({recipe})");
            }
            reference.Recipe = Fp8Recipe.Fp32;
        }

        // 2. The accumulator: 14 kept bits without promotion drift as K grows; promotion every 128 fixes it.
        var acc = new Fp8Accumulator();
        var noPromotion = acc with { PromotionInterval = 0 };
        long k = ctx.Quick ? 1024 : 4096;
        ctx.Out.WriteLine($"\nGEMM with K = {k}: relative error {noPromotion.RelativeError(k):E2} with a 14-bit accumulator, {acc.RelativeError(k):E2} with FP32 promotion every 128");

        // 3. Train the same tiny MLA LM twice from the same weights on the same batches.
        var o = new Fp8ComparisonOptions
        {
            Loop = new() { Steps = ctx.Quick ? 8 : 60, BatchSize = ctx.Quick ? 4 : 8 },
            Model = new() { Hidden = ctx.Quick ? 32 : 64, Layers = 1, Heads = ctx.Quick ? 2 : 4 },
            SequenceLength = ctx.Quick ? 32 : 64, EvalBatches = ctx.Quick ? 2 : 8, CorpusCharacters = ctx.Quick ? 10_000 : 50_000, Seeds = [1],
        };
        var runs = Fp8TrainingComparison.Run([Fp8Recipe.Bf16, Fp8Recipe.DeepSeekV3], o, ctx.Device,
            r => ctx.Out.WriteLine($"  {r.Recipe,-12} seed {r.Seed}: final eval loss {r.FinalEvalLoss:F4}, skipped steps {r.SkippedSteps}, {r.Seconds:F1} s"));
        var gap = Fp8TrainingComparison.Gaps(runs).First(g => g.Recipe == "deepseek-v3");
        ctx.Out.WriteLine($"Relative eval-loss gap of the DeepSeek-V3 recipe vs BF16 after {o.Loop.Steps} steps: {gap.MeanRelativeGap:P3} (one seed, tiny model: noise, not a measurement)");
        ctx.Out.WriteLine($"Both runs finite: {runs.All(r => double.IsFinite(r.FinalEvalLoss))}");

        var plt = new ScottPlot.Plot();
        foreach (var r in runs)
        {
            var line = plt.Add.Scatter(Enumerable.Range(1, r.Loss.Length).Select(s => (double)s).ToArray(), r.Loss);
            line.LegendText = r.Recipe;
        }
        plt.Axes.Bottom.Label.Text = "step";
        plt.Axes.Left.Label.Text = "training loss (nats/char)";
        plt.Title("BF16 vs DeepSeek-V3 FP8 recipe (simulated)");
        plt.ShowLegend(ScottPlot.Edge.Right);                        // outside the data: covers no curve
        var path = Path.Combine(ctx.OutDir, "loss.png");
        plt.SavePng(path, 640, 400);
        ctx.Out.WriteLine($"Plot: {path}. More seeds and steps: whale fp8 train (results in benchmarks/results/fp8/).");
    }
}
