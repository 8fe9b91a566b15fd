// `memory`: process memory over a long training run (issue 9). A tiny MoE LM trains for many steps, one
// torch.NewDisposeScope() per step (inside LmTrainer); every 100 steps the suite records the process's
// resident memory, the live tensors TorchSharp tracks on this thread, and (on CUDA) nothing more, since
// TorchSharp binds no cuda.memory_allocated. Flat lines = no native leak.
using System.Diagnostics;
using TorchSharp;
using WhaleTech.Lab.Bench;
using WhaleTech.Model;
using WhaleTech.Runtime;
using WhaleTech.Training;
using static TorchSharp.torch;
using WhaleTech.Core;

namespace WhaleTech.Benchmarks;

public sealed class MemorySuite : ISuite
{
    public string Name => "memory";
    public string Description =>
        "Resident process memory (MiB) and live TorchSharp tensors every 100 steps of training a tiny DeepSeekMoE LM (MLA attention, 4 experts).";

    public BenchmarkResult Run(Device device, SuiteOptions options)
    {
        int steps = options.Quick ? 300 : 3000;
        var result = new BenchmarkResult(Name, Description, MachineInfo.Collect(device)) { Plot = new PlotSpec("rss_mib", "step") };
        torch.manual_seed(1);
        var tok = new CharTokenizer();
        var cfg = ModelConfig.Tiny("mla", vocab: tok.VocabSize, hidden: 32, layers: 2, heads: 2) with
        { NRoutedExperts = 4, NSharedExperts = 1, NumExpertsPerTok = 2, MoeIntermediateSize = 32 };
        using var model = new DeepSeekLM(cfg);
        model.to(device);
        var trainer = new LmTrainer(model, new TrainOptions { Steps = steps, BatchSize = 8, SequenceLength = 32, WarmupSteps = 10, EvalEvery = steps });
        var stream = new TokenWindowStream(tok.Encode(new SyntheticCorpus(50_000, 1).Text), 8, 32, 1);
        using var process = Process.GetCurrentProcess();
        for (int step = 1; step <= steps; step++)
        {
            using (var scope = torch.NewDisposeScope())
            {
                var (x, y) = stream.Next(device);
                trainer.TrainStep(x, y);
            }
            if (step % 100 == 0)
            {
                Backend.Synchronize(device);
                process.Refresh();
                double rss = process.WorkingSet64 / (1024.0 * 1024.0);
                long live = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
                result.AddRow("train").With("step", step).Add("rss_mib", rss, "MiB").Add("live_tensors", live, "");
                Console.WriteLine($"  step {step}: RSS {rss:F1} MiB, live tensors {live}");
            }
        }
        return result;
    }
}
