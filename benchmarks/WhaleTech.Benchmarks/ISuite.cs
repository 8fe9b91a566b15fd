// A benchmark suite: one class per file in Suites/, listed once in SuiteRegistry.All.
using WhaleTech.Lab.Bench;
using static TorchSharp.torch;

namespace WhaleTech.Benchmarks;

/// <summary>How a suite should run: --quick shrinks sizes and repetitions to a smoke test (seconds, not minutes).</summary>
public sealed record SuiteOptions(bool Quick)
{
    public int Warmup => Quick ? 1 : 3;
    public int Repetitions => Quick ? 5 : 15;
}

public interface ISuite
{
    /// <summary>The command-line name, also the name of the result files (letters, digits, '-').</summary>
    string Name { get; }
    /// <summary>One or two sentences: what is measured and in which unit. Shown by `list` and in the Markdown.</summary>
    string Description { get; }
    /// <summary>Measures on <paramref name="device"/> and returns the result (the program writes the files).</summary>
    BenchmarkResult Run(Device device, SuiteOptions options);
}
