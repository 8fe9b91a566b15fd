using System.Runtime.CompilerServices;
using TorchSharp;

namespace WhaleTech.Tests;

/// <summary>Tests use tiny tensors and xunit already runs test classes in parallel: one libtorch thread per
/// test avoids oversubscribing the cores (measured ~30× slower steps with 2 threads under contention).</summary>
static class TestSetup
{
    [ModuleInitializer]
    internal static void Init()
    {
        WhaleTech.Runtime.Backend.Initialize();
        torch.set_num_threads(1);
    }
}
