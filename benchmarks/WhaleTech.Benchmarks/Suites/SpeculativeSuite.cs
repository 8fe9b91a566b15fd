// `speculative`: MTP self-speculative decoding (DeepSeek-V3 §2.2, §5.4.3). For each main-model depth, trains a
// character-level MLA LM with one MTP module (λ = 0.3) on the synthetic corpus, then decodes six prompts × 64
// tokens with plain decoding and with the MTP module as the draft, alternating the two, at batch 1 and 4, greedy
// and sampled (temperature 0.7, seeded). Reports tokens/s of both, the speed-up, the draft acceptance rate, the
// part kept after the batch minimum, tokens per main forward and (greedy) whether the tokens were identical (they
// must be). The MTP module costs about one layer, so deeper main models gain more; batching keeps the worst row's
// acceptance per round, so it lowers tokens per forward.
using TorchSharp;
using WhaleTech.Lab.Bench;
using WhaleTech.Training;
using static TorchSharp.torch;
using WhaleTech.Lab.Mtp;

namespace WhaleTech.Benchmarks;

public sealed class SpeculativeSuite : ISuite
{
    public string Name => "speculative";
    public string Description =>
        "MTP speculative decoding vs plain decoding (6 prompts × 64 tokens) of char-level MLA LMs (hidden 128, 4 and 8 layers) " +
        "trained 600 steps with one MTP module, at batch 1 and 4, greedy and sampled (temperature 0.7): tokens/s, speed-up, acceptance rate, tokens per main forward.";

    /// <summary>The decode settings measured per model: (batch, temperature).</summary>
    static readonly (int Batch, double Temperature)[] Settings = [(1, 0), (4, 0), (1, 0.7), (4, 0.7)];

    public BenchmarkResult Run(Device device, SuiteOptions options)
    {
        var result = new BenchmarkResult(Name, Description, Runtime.MachineInfo.Collect(device)) { Plot = new PlotSpec("tokens_per_s", "layers") };
        int[] layers = options.Quick ? [2] : [4, 8];
        int steps = options.Quick ? 30 : 600, newTokens = options.Quick ? 16 : 64;
        result.With("train_steps", steps).With("new_tokens", newTokens).With("mtp_depth", 1).With("mtp_weight", 0.3);
        foreach (int l in layers)
        {
            var d = new MtpExperimentOptions();
            var o = d with { Model = d.Model with { Layers = l, Hidden = options.Quick ? 32 : 128 }, Loop = d.Loop with { Steps = steps } };
            Console.WriteLine($"  training {l} layers × hidden {o.Model.Hidden}, {steps} steps …");
            var (model, history) = MtpExperiment.Train(o, device);
            using var _ = model;
            var last = history[^1];
            var heldOut = MtpExperiment.EvaluateHeldOut(model, o, device, options.Quick ? 2 : 16);
            Console.WriteLine($"  {heldOut}");
            foreach (var (batch, temperature) in Settings)
            {
                var settings = new DecodeSettings { BatchSize = batch, Temperature = temperature, Seed = 1 };
                var s = MtpExperiment.MeasureDecode(model, MtpExperiment.DefaultPrompts, newTokens, device, options.Warmup, options.Repetitions, settings);
                MtpExperiment.AddTo(result, s, model.Config, last, heldOut);
                Console.WriteLine($"  {l} layers, batch {batch}, temperature {temperature}: acceptance {s.AcceptanceRate:P1} (kept {s.KeptRate:P1}), {s.TokensPerForward:F2} tokens/forward, " +
                                  $"plain {s.PlainTokensPerSecond:F0} tokens/s, speculative {s.SpeculativeTokensPerSecond:F0} tokens/s, speed-up {s.SpeedUp:F2}×" +
                                  (settings.Greedy ? $", identical {s.AllSame}" : ""));
            }
        }
        return result;
    }
}
