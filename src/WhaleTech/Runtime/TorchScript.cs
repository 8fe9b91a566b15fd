// Calling aten ops that TorchSharp does not bind (torch._grouped_mm, torch._scaled_mm, SDPA with `scale` and
// `enable_gqa`) through TorchScript: the source is compiled once, on first use, and shared by all callers.
// TorchScript wants the source to end with a newline, so it is added here rather than in every script.
using static TorchSharp.torch;

namespace WhaleTech.Runtime;

public static class TorchScript
{
    /// <summary>A compilation unit of <paramref name="source"/>, compiled on first use (thread-safe).</summary>
    public static Lazy<jit.CompilationUnit> CompileOnFirstUse(string source)
        => new(() => jit.compile(source.EndsWith('\n') ? source : source + "\n"), LazyThreadSafetyMode.ExecutionAndPublication);
}
