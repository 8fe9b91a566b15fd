using System.Runtime.CompilerServices;
using TorchSharp;

// Test classes run one after another: many tests seed libtorch's process-wide RNG (torch.manual_seed) and then
// build a model, so two classes running at once could interleave their draws and a "same seed, same weights"
// test would fail by chance (seen: Training.CheckpointTests.ResumeIsBitExact under a parallel run).
[assembly: Xunit.CollectionBehavior(DisableTestParallelization = true)]

namespace WhaleTech.Tests;

/// <summary>Tests use tiny tensors: one libtorch thread avoids spinning threads on a shared 2-core machine
/// (measured ~30× slower steps with 2 threads under contention).</summary>
static class TestSetup
{
    [ModuleInitializer]
    internal static void Init()
    {
        WhaleTech.Runtime.Backend.Initialize();
        torch.set_num_threads(1);
    }
}
