// Moving raw little-endian bytes in and out of CPU tensors, in bounded chunks, so tensors larger than a
// .NET span (2 GiB) and files larger than memory both work. Every tensor of a supported dtype, the two
// float8 types included, is filled through TorchSharp's `Tensor.bytes`.
using TorchSharp;
using static TorchSharp.torch;

namespace WhaleTech.IO;

internal static class TensorBytes
{
    /// <summary>Chunk size in bytes; tests lower it to exercise the chunked paths.</summary>
    internal static int ChunkBytes { get; set; } = 16 << 20;

    /// <summary>Creates a CPU tensor of <paramref name="type"/> and <paramref name="shape"/> whose bytes
    /// come from <paramref name="read"/>(offset within the tensor, destination).</summary>
    public static Tensor FromBytes(ScalarType type, long[] shape, int elementSize, Action<long, Span<byte>> read)
    {
        var t = empty(shape, dtype: type, device: CPU);
        long count = t.numel();
        if (count == 0) return t;
        long chunk = Math.Max(1, ChunkBytes / elementSize);
        try
        {
            if (count <= chunk) { var buf = new byte[count * elementSize]; read(0, buf); t.bytes = buf; return t; }
            using var flat = t.view(-1);
            var buffer = new byte[chunk * elementSize];
            for (long start = 0; start < count; start += chunk)
            {
                long n = Math.Min(chunk, count - start);
                var span = buffer.AsSpan(0, (int)(n * elementSize));
                read(start * elementSize, span);
                using var part = flat.narrow(0, start, n);
                part.bytes = span;
            }
            return t;
        }
        catch { t.Dispose(); throw; }
    }

    /// <summary>Writes a tensor's bytes (contiguous, little-endian, C order) to <paramref name="output"/>.</summary>
    public static void WriteTo(Tensor tensor, Stream output)
    {
        using var scope = NewDisposeScope();
        var t = tensor.detach();
        if (t.device_type != DeviceType.CPU) t = t.cpu();
        t = t.contiguous();
        long count = t.numel();
        if (count == 0) return;
        int elementSize = (int)t.ElementSize;
        long chunk = Math.Max(1, ChunkBytes / elementSize);
        if (count <= chunk) { output.Write(t.bytes); return; }
        var flat = t.view(-1);
        for (long start = 0; start < count; start += chunk)
        {
            using var part = flat.narrow(0, start, Math.Min(chunk, count - start));
            output.Write(part.bytes);
        }
    }
}
