// Reading safetensors files (Hugging Face's format for weights; layout and checks in SafeTensorsHeader).
//
//   using var f = SafeTensorsFile.Open("model.safetensors");   // reads and validates the header only
//   foreach (var info in f.Tensors) ...                         // name, dtype, shape, offsets
//   using var w = f.ToTensor("model.embed_tokens.weight");      // reads that tensor's bytes, on demand
//
// Open(path) reads tensor data lazily from the file; Read(byte[]) / Read(Stream) work in memory (the
// fuzz tests use them). A corrupt, truncated or hostile file is a WhaleFormatException naming the file
// and the problem; the reader never allocates more than the file holds and never loops on bad input.
using WhaleTech.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace WhaleTech.IO;

public sealed class SafeTensorsFile
{
    readonly Dictionary<string, SafeTensorInfo> _byName;
    readonly Action<long, Span<byte>> _readData; // (offset in the data buffer, destination)

    /// <summary>The file path, or the source name given to Read.</summary>
    public string Source { get; }
    /// <summary>The header's "__metadata__" (order kept as in the file); null when the header has none.</summary>
    public IReadOnlyDictionary<string, string>? Metadata { get; }
    /// <summary>The tensors in data order (ascending offsets).</summary>
    public IReadOnlyList<SafeTensorInfo> Tensors { get; }
    /// <summary>Bytes before the data buffer: 8 + header length.</summary>
    public long DataStart { get; }
    /// <summary>Length of the data buffer in bytes.</summary>
    public long DataLength { get; }

    SafeTensorsFile(string source, List<SafeTensorInfo> tensors, Dictionary<string, string>? metadata,
                    long dataStart, long dataLength, Action<long, Span<byte>> readData)
    {
        Source = source;
        Tensors = tensors.OrderBy(t => t.Begin).ThenBy(t => t.End).ToList();
        _byName = tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
        Metadata = metadata;
        DataStart = dataStart;
        DataLength = dataLength;
        _readData = readData;
    }

    public IEnumerable<string> Names => Tensors.Select(t => t.Name);
    public bool Contains(string name) => _byName.ContainsKey(name);

    /// <summary>The header entry of <paramref name="name"/>; a WhaleArgumentException lists what exists.</summary>
    public SafeTensorInfo this[string name] => _byName.TryGetValue(name, out var t) ? t
        : throw new WhaleArgumentException("tensor name", name, $"must be one of the {_byName.Count} tensors in {Source}" +
              (_byName.Count <= 8 ? $" ({string.Join(", ", _byName.Keys)})" : ""));

    // ---- opening --------------------------------------------------------------------------------

    /// <summary>Opens a file: reads and validates the header now, tensor data when asked.</summary>
    public static SafeTensorsFile Open(string path)
    {
        if (!File.Exists(path)) throw new WhaleArgumentException("path", path, "must name an existing .safetensors file");
        long length;
        byte[] header;
        using (var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1))
        {
            length = fs.Length;
            var first8 = new byte[8];
            int got = fs.ReadAtLeast(first8, 8, throwOnEndOfStream: false);
            long n = SafeTensorsHeader.CheckLength(first8, got < 8 ? got : length, path);
            header = new byte[n];
            if (fs.ReadAtLeast(header, header.Length, throwOnEndOfStream: false) != header.Length)
                throw new WhaleFormatException(path, "file shrank while its header was read");
        }
        var (tensors, metadata) = SafeTensorsHeader.Parse(header, length - 8 - header.Length, path);
        long dataStart = 8 + header.Length;
        void Read(long offset, Span<byte> dest)
        {
            using var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read);
            long at = dataStart + offset;
            while (dest.Length > 0)
            {
                int got = RandomAccess.Read(handle, dest, at);
                if (got <= 0) throw new WhaleFormatException(path, $"file ends at byte {at}, inside tensor data (truncated after it was opened?)");
                dest = dest[got..]; at += got;
            }
        }
        return new SafeTensorsFile(path, tensors, metadata, dataStart, length - dataStart, Read);
    }

    /// <summary>Parses a whole file held in memory (the bytes are kept, not copied).</summary>
    public static SafeTensorsFile Read(byte[] bytes, string source = "<memory>")
    {
        ArgumentNullException.ThrowIfNull(bytes);
        long n = SafeTensorsHeader.CheckLength(bytes.AsSpan(0, Math.Min(8, bytes.Length)), bytes.Length, source);
        var (tensors, metadata) = SafeTensorsHeader.Parse(bytes.AsSpan(8, (int)n), bytes.Length - 8 - n, source);
        int dataStart = 8 + (int)n;
        return new SafeTensorsFile(source, tensors, metadata, dataStart, bytes.Length - dataStart,
            (offset, dest) => bytes.AsSpan((int)(dataStart + offset), dest.Length).CopyTo(dest));
    }

    /// <summary>Reads a whole stream into memory (at most what the stream holds) and parses it.</summary>
    public static SafeTensorsFile Read(Stream stream, string source = "<stream>")
    {
        ArgumentNullException.ThrowIfNull(stream);
        long left = stream.CanSeek ? Math.Max(0, stream.Length - stream.Position) : 0;
        if (left > Array.MaxLength) throw new WhaleFormatException(source, $"stream of {left} bytes is too large to read into memory; use Open(path)");
        using var ms = new MemoryStream((int)left);
        stream.CopyTo(ms);
        return Read(ms.Length == ms.Capacity ? ms.GetBuffer() : ms.ToArray(), source);
    }

    // ---- tensor data ----------------------------------------------------------------------------

    /// <summary>The raw little-endian bytes of one tensor (C order).</summary>
    public byte[] ReadBytes(string name)
    {
        var info = this[name];
        if (info.ByteLength > Array.MaxLength)
            throw new WhaleArgumentException("tensor name", name, $"must be under {Array.MaxLength} bytes to read as a byte array; use ToTensor");
        var bytes = new byte[info.ByteLength];
        _readData(info.Begin, bytes);
        return bytes;
    }

    /// <summary>One tensor as a TorchSharp tensor of its own dtype (float8 included) on CPU, or moved to
    /// <paramref name="device"/>. U16/U32/U64 have no TorchSharp type: use ReadBytes.</summary>
    public Tensor ToTensor(string name, Device? device = null)
    {
        var info = this[name];
        var type = info.DType.ToScalarType()
            ?? throw new WhaleFormatException(Source, $"tensor '{name}' has dtype {info.DType}, which TorchSharp cannot hold; read it with ReadBytes");
        var t = TensorBytes.FromBytes(type, info.Shape, info.DType.Size(), (offset, dest) => _readData(info.Begin + offset, dest));
        if (device is null || device.type == DeviceType.CPU) return t;
        using (t) return t.to(device);
    }

    /// <summary>One tensor converted to float32 (float8/16 widen exactly), on CPU.</summary>
    public float[] ToFloat32Array(string name)
    {
        using var t = ToTensor(name);
        using var f = t.to_type(ScalarType.Float32);
        return f.data<float>().ToArray();
    }

    /// <summary>Yields every tensor in data order; the caller disposes each.</summary>
    public IEnumerable<(string Name, Tensor Tensor)> ReadAll(Device? device = null)
    {
        foreach (var t in Tensors) yield return (t.Name, ToTensor(t.Name, device));
    }

    // ---- writing back ---------------------------------------------------------------------------

    /// <summary>Writes this file's tensors and metadata as a new file (atomically). A file written by
    /// SafeTensorsWriter or by the Hugging Face writer comes back byte for byte.</summary>
    public void Save(string path) => SafeTensorsWriter.WriteRaw(path, Tensors.Select(t => new SafeTensorsWriter.RawTensor(
        t.Name, t.DType, t.Shape, t.ByteLength, s => CopyData(t, s))), Metadata);

    void CopyData(SafeTensorInfo t, Stream s)
    {
        var buffer = new byte[(int)Math.Min(t.ByteLength, TensorBytes.ChunkBytes)];
        for (long at = 0; at < t.ByteLength; at += buffer.Length)
        {
            var span = buffer.AsSpan(0, (int)Math.Min(buffer.Length, t.ByteLength - at));
            _readData(t.Begin + at, span);
            s.Write(span);
        }
    }

    /// <summary>Same as <see cref="Save"/>, into memory.</summary>
    public byte[] ToBytes() => SafeTensorsWriter.ToBytesRaw(Tensors.Select(t => new SafeTensorsWriter.RawTensor(
        t.Name, t.DType, t.Shape, t.ByteLength, s => CopyData(t, s))), Metadata);
}
