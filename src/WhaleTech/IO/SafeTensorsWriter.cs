// Writing safetensors files exactly as Hugging Face's reference writer does, so the bytes match:
//   * tensors sorted by dtype alignment descending (F64/I64 first ... BOOL last), then by name;
//   * data packed back to back in that order, offsets relative to the data buffer;
//   * compact JSON header ("__metadata__" first), padded with spaces to a multiple of 8 bytes so every
//     tensor's data is 8-byte aligned in the file.
// Files are written atomically (IO/AtomicFile): a crash mid-write leaves the previous file intact.
//
//   SafeTensorsWriter.Write("model.safetensors", [("w", w), ("b", b)], new Dictionary<string,string> { ["format"] = "pt" });
using WhaleTech.Runtime;
using static TorchSharp.torch;

namespace WhaleTech.IO;

public static class SafeTensorsWriter
{
    /// <summary>A tensor given as raw bytes: <paramref name="WriteData"/> writes exactly ByteLength bytes.</summary>
    public sealed record RawTensor(string Name, SafeTensorsDType DType, long[] Shape, long ByteLength, Action<Stream> WriteData);

    /// <summary>Writes tensors (any device, any layout) and optional metadata to <paramref name="path"/>, atomically.
    /// Metadata is written in the dictionary's enumeration order.</summary>
    public static void Write(string path, IEnumerable<(string Name, Tensor Tensor)> tensors, IReadOnlyDictionary<string, string>? metadata = null)
        => WriteRaw(path, FromTensors(tensors), metadata);

    public static void Write(string path, IEnumerable<KeyValuePair<string, Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null)
        => Write(path, tensors.Select(kv => (kv.Key, kv.Value)), metadata);

    /// <summary>The file's bytes, in memory.</summary>
    public static byte[] ToBytes(IEnumerable<(string Name, Tensor Tensor)> tensors, IReadOnlyDictionary<string, string>? metadata = null)
        => ToBytesRaw(FromTensors(tensors), metadata);

    /// <summary>Writes to any stream (not atomic; use Write(path, ...) for files).</summary>
    public static void Write(Stream output, IEnumerable<(string Name, Tensor Tensor)> tensors, IReadOnlyDictionary<string, string>? metadata = null)
        => WriteCore(output, Prepare(FromTensors(tensors), metadata));

    public static void WriteRaw(string path, IEnumerable<RawTensor> tensors, IEnumerable<KeyValuePair<string, string>>? metadata = null)
    {
        var prepared = Prepare(tensors, metadata); // validate before touching the disk
        AtomicFile.Write(path, s => WriteCore(s, prepared));
    }

    public static byte[] ToBytesRaw(IEnumerable<RawTensor> tensors, IEnumerable<KeyValuePair<string, string>>? metadata = null)
    {
        using var ms = new MemoryStream();
        WriteCore(ms, Prepare(tensors, metadata));
        return ms.ToArray();
    }

    static IEnumerable<RawTensor> FromTensors(IEnumerable<(string Name, Tensor Tensor)> tensors)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        foreach (var (name, t) in tensors)
        {
            if (t is null || t.IsInvalid) throw new WhaleArgumentException($"tensor '{name}'", "null or disposed", "must be a live tensor");
            var dtype = SafeTensorsDTypes.FromScalarType(t.dtype, $"dtype of tensor '{name}'");
            yield return new RawTensor(name, dtype, t.shape, t.numel() * dtype.Size(), s => TensorBytes.WriteTo(t, s));
        }
    }

    sealed record Prepared(byte[] Header, List<RawTensor> Ordered, long DataLength);

    static Prepared Prepare(IEnumerable<RawTensor> tensors, IEnumerable<KeyValuePair<string, string>>? metadata)
    {
        var list = tensors.ToList();
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var t in list)
        {
            if (t.Name is null) throw new WhaleArgumentException("tensor name", null, "must be a string");
            if (t.Name == "__metadata__") throw new WhaleArgumentException("tensor name", t.Name, "is reserved for the header's metadata");
            if (!names.Add(t.Name)) throw new WhaleArgumentException("tensor name", t.Name, "must be unique within a file");
            if (t.Shape.Any(d => d < 0)) throw new WhaleArgumentException($"shape of '{t.Name}'", t.Shape, "must hold non-negative sizes");
            long elements = t.Shape.Aggregate(1L, (a, d) => checked(a * d));
            if (elements * t.DType.Size() != t.ByteLength)
                throw new WhaleArgumentException($"byte length of '{t.Name}'", t.ByteLength, $"must equal elements × {t.DType.Size()} = {elements * t.DType.Size()}");
        }
        // The reference writer's order: dtype (alignment) descending, then name.
        list.Sort((a, b) => a.DType != b.DType ? b.DType.CompareTo(a.DType) : SafeTensorsHeader.CompareNames(a.Name, b.Name));
        var infos = new List<SafeTensorInfo>(list.Count);
        long offset = 0;
        foreach (var t in list)
        {
            infos.Add(new SafeTensorInfo(t.Name, t.DType, t.Shape, offset, offset + t.ByteLength));
            offset += t.ByteLength;
        }
        var meta = metadata?.ToList();
        if (meta is not null)
        {
            var keys = new HashSet<string>(StringComparer.Ordinal);
            foreach (var (k, v) in meta)
            {
                if (k is null || v is null) throw new WhaleArgumentException("metadata", k ?? "null", "keys and values must be strings");
                if (!keys.Add(k)) throw new WhaleArgumentException("metadata key", k, "must be unique");
            }
        }
        return new Prepared(SafeTensorsHeader.Serialize(infos, meta), list, offset);
    }

    static void WriteCore(Stream output, Prepared p)
    {
        Span<byte> n = stackalloc byte[8];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(n, (ulong)p.Header.Length);
        output.Write(n);
        output.Write(p.Header);
        foreach (var t in p.Ordered)
        {
            long before = output.CanSeek ? output.Position : -1;
            t.WriteData(output);
            if (before >= 0 && output.Position - before != t.ByteLength)
                throw new WhaleException($"safetensors writer: tensor '{t.Name}' wrote {output.Position - before} bytes, expected {t.ByteLength}");
        }
    }
}
