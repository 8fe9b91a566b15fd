// The safetensors header: parsing with strict validation, and writing in the reference writer's exact
// byte layout.
//
// File layout:  [8 bytes: N, u64 little-endian] [N bytes: UTF-8 JSON header, padded with spaces] [data]
// Header JSON:  {"__metadata__": {str: str}?, "<name>": {"dtype": "F32", "shape": [d0, d1, ...],
//                "data_offsets": [begin, end]}, ...}   offsets are relative to the start of the data.
//
// Validation (every failure is a WhaleFormatException naming the source and the problem):
//   N ≤ 100 MB (the reference reader's limit) and 8 + N ≤ file length; strict UTF-8; one JSON object that
//   starts at the first byte; no duplicate keys anywhere; known dtypes; shapes of non-negative integers
//   whose element count cannot overflow; end - begin == elements × dtype size; sorted by offset, the
//   tensors tile the data buffer exactly (no gap, no overlap, last end == buffer length).
// Nothing here allocates more than the header's own size, which is bounded by the file's.
using System.Text;
using System.Text.Json;
using WhaleTech.Runtime;

namespace WhaleTech.IO;

/// <summary>One tensor's entry in a safetensors header. Offsets are relative to the data buffer.</summary>
public sealed record SafeTensorInfo(string Name, SafeTensorsDType DType, long[] Shape, long Begin, long End)
{
    /// <summary>Number of elements (1 for a scalar, shape []).</summary>
    public long ElementCount => Shape.Aggregate(1L, (a, d) => a * d);
    /// <summary>Bytes of data, End - Begin.</summary>
    public long ByteLength => End - Begin;
    public override string ToString() => $"{Name}: {DType} [{string.Join(", ", Shape)}] @[{Begin}, {End})";
}

internal static class SafeTensorsHeader
{
    /// <summary>The reference reader refuses headers larger than this; so do we.</summary>
    public const long MaxHeaderBytes = 100_000_000;
    public const int MaxRank = 64;
    /// <summary>Bound on the product of the non-zero dimensions, so no consumer can overflow.</summary>
    const long MaxElements = long.MaxValue / 16;

    static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>Checks the 8-byte length field against the file length; returns N.</summary>
    public static long CheckLength(ReadOnlySpan<byte> first8, long fileLength, string source)
    {
        if (fileLength < 8) throw new WhaleFormatException(source, $"truncated safetensors file: {fileLength} bytes, but the 8-byte header length alone needs 8");
        ulong n = BitConverter.ToUInt64(first8);
        if (!BitConverter.IsLittleEndian) n = System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(n);
        if (n > MaxHeaderBytes)
            throw new WhaleFormatException(source, $"header length {n} (as signed: {unchecked((long)n)}) exceeds the safetensors limit of {MaxHeaderBytes} bytes; not a safetensors file or corrupt");
        if ((long)n + 8 > fileLength)
            throw new WhaleFormatException(source, $"header length {n} runs past the end of the file ({fileLength} bytes): truncated or corrupt");
        if (n < 2) throw new WhaleFormatException(source, $"header length {n} is too small for a JSON object");
        return (long)n;
    }

    /// <summary>Parses and validates the header; <paramref name="bufferLength"/> = file length - 8 - N.</summary>
    public static (List<SafeTensorInfo> Tensors, Dictionary<string, string>? Metadata) Parse(ReadOnlySpan<byte> header, long bufferLength, string source)
    {
        try { StrictUtf8.GetCharCount(header); }
        catch (DecoderFallbackException) { throw new WhaleFormatException(source, "header is not valid UTF-8"); }
        if (header[0] != (byte)'{') throw new WhaleFormatException(source, $"header must start with '{{' but starts with byte 0x{header[0]:x2}");

        var tensors = new List<SafeTensorInfo>();
        Dictionary<string, string>? metadata = null;
        try
        {
            var r = new Utf8JsonReader(header, new JsonReaderOptions { MaxDepth = 8, CommentHandling = JsonCommentHandling.Disallow });
            r.Read(); // StartObject
            var seen = new HashSet<string>(StringComparer.Ordinal);
            while (r.Read() && r.TokenType != JsonTokenType.EndObject)
            {
                string key = r.GetString()!;
                if (!seen.Add(key)) throw new WhaleFormatException(source, $"duplicate key '{key}' in the header");
                r.Read();
                if (key == "__metadata__") metadata = ReadMetadata(ref r, source);
                else tensors.Add(ReadTensor(ref r, key, source));
            }
            if (r.Read()) throw new WhaleFormatException(source, "unexpected content after the header's JSON object");
        }
        catch (JsonException e) { throw new WhaleFormatException(source, $"header is not valid JSON ({e.Message})", e); }
        catch (InvalidOperationException e) { throw new WhaleFormatException(source, $"header is not valid JSON ({e.Message})", e); }

        CheckTiling(tensors, bufferLength, source);
        return (tensors, metadata);
    }

    static Dictionary<string, string> ReadMetadata(ref Utf8JsonReader r, string source)
    {
        Expect(ref r, JsonTokenType.StartObject, "__metadata__", "an object of string values", source);
        var m = new Dictionary<string, string>(StringComparer.Ordinal);
        while (r.Read() && r.TokenType != JsonTokenType.EndObject)
        {
            string key = r.GetString()!;
            r.Read();
            Expect(ref r, JsonTokenType.String, $"__metadata__.{key}", "a string", source);
            if (!m.TryAdd(key, r.GetString()!)) throw new WhaleFormatException(source, $"duplicate key '{key}' in __metadata__");
        }
        return m;
    }

    static SafeTensorInfo ReadTensor(ref Utf8JsonReader r, string name, string source)
    {
        Expect(ref r, JsonTokenType.StartObject, name, "an object {dtype, shape, data_offsets}", source);
        SafeTensorsDType? dtype = null; long[]? shape = null; long[]? offsets = null;
        while (r.Read() && r.TokenType != JsonTokenType.EndObject)
        {
            string key = r.GetString()!;
            r.Read();
            switch (key)
            {
                case "dtype" when dtype is null:
                    Expect(ref r, JsonTokenType.String, $"{name}.dtype", "a string", source);
                    var text = r.GetString();
                    dtype = SafeTensorsDTypes.TryParse(text) ?? throw new WhaleFormatException(source,
                        $"tensor '{name}' has unknown dtype '{text}' (allowed: {string.Join(", ", Enum.GetNames<SafeTensorsDType>())})");
                    break;
                case "shape" when shape is null:
                    shape = ReadIntegers(ref r, $"{name}.shape", MaxRank, source);
                    break;
                case "data_offsets" when offsets is null:
                    offsets = ReadIntegers(ref r, $"{name}.data_offsets", 2, source);
                    if (offsets.Length != 2) throw new WhaleFormatException(source, $"tensor '{name}': data_offsets must be [begin, end], got {offsets.Length} numbers");
                    break;
                case "dtype" or "shape" or "data_offsets":
                    throw new WhaleFormatException(source, $"duplicate key '{key}' in tensor '{name}'");
                default:
                    throw new WhaleFormatException(source, $"tensor '{name}' has unknown field '{key}' (allowed: dtype, shape, data_offsets)");
            }
        }
        if (dtype is null || shape is null || offsets is null)
            throw new WhaleFormatException(source, $"tensor '{name}' lacks {(dtype is null ? "dtype" : shape is null ? "shape" : "data_offsets")}");

        // Element count with overflow checks; zero dimensions are ignored in the bound so that no
        // consumer (libtorch's stride computation included) can overflow either.
        long bound = 1, count = 1;
        foreach (var d in shape)
        {
            if (d > 0 && bound > MaxElements / d)
                throw new WhaleFormatException(source, $"tensor '{name}' has absurd shape [{string.Join(", ", shape)}] (element count overflows)");
            if (d > 0) bound *= d;
            count = d == 0 ? 0 : count * d;
        }
        long begin = offsets[0], end = offsets[1];
        if (end < begin) throw new WhaleFormatException(source, $"tensor '{name}': data_offsets [{begin}, {end}] end before they begin");
        long need = count * dtype.Value.Size(); // ≤ MaxElements × 8: no overflow
        if (end - begin != need)
            throw new WhaleFormatException(source, $"tensor '{name}': {dtype} [{string.Join(", ", shape)}] needs {need} bytes but data_offsets [{begin}, {end}] span {end - begin}");
        return new SafeTensorInfo(name, dtype.Value, shape, begin, end);
    }

    static long[] ReadIntegers(ref Utf8JsonReader r, string what, int max, string source)
    {
        Expect(ref r, JsonTokenType.StartArray, what, "an array of non-negative integers", source);
        var list = new List<long>();
        while (r.Read() && r.TokenType != JsonTokenType.EndArray)
        {
            if (r.TokenType != JsonTokenType.Number || !r.TryGetInt64(out long v) || v < 0)
                throw new WhaleFormatException(source, $"{what} must hold non-negative integers (< 2^63), found {Describe(ref r)}");
            if (list.Count == max) throw new WhaleFormatException(source, $"{what} has more than {max} entries");
            list.Add(v);
        }
        return list.ToArray();
    }

    static void Expect(ref Utf8JsonReader r, JsonTokenType type, string what, string allowed, string source)
    {
        if (r.TokenType != type) throw new WhaleFormatException(source, $"{what} must be {allowed}, found {Describe(ref r)}");
    }

    static string Describe(ref Utf8JsonReader r) => r.TokenType switch
    {
        JsonTokenType.Number or JsonTokenType.String => $"{r.TokenType.ToString().ToLowerInvariant()} {Encoding.UTF8.GetString(r.ValueSpan[..Math.Min(r.ValueSpan.Length, 40)])}",
        _ => r.TokenType.ToString(),
    };

    /// <summary>Sorted by offset, the tensors must cover [0, bufferLength) exactly once.</summary>
    static void CheckTiling(List<SafeTensorInfo> tensors, long bufferLength, string source)
    {
        foreach (var t in tensors)
            if (t.End > bufferLength)
                throw new WhaleFormatException(source, $"tensor '{t.Name}': data_offsets [{t.Begin}, {t.End}] are out of range (the data buffer holds {bufferLength} bytes)");
        var sorted = tensors.OrderBy(t => t.Begin).ThenBy(t => t.End).ToList();
        long at = 0; string? previous = null;
        foreach (var t in sorted)
        {
            if (t.Begin < at) throw new WhaleFormatException(source, $"tensor '{t.Name}' at [{t.Begin}, {t.End}) overlaps tensor '{previous}' (which ends at {at})");
            if (t.Begin > at) throw new WhaleFormatException(source, $"tensor '{t.Name}' starts at {t.Begin}, leaving a gap of {t.Begin - at} bytes after {(previous is null ? "the header" : $"tensor '{previous}'")}");
            at = t.End; previous = t.Name;
        }
        if (at != bufferLength)
            throw new WhaleFormatException(source, $"the tensors cover {at} bytes but the data buffer holds {bufferLength} (truncated, or trailing bytes)");
    }

    // ---- writing ---------------------------------------------------------------------------------

    /// <summary>The header bytes, compact JSON padded with spaces to a multiple of 8, as the reference writer.</summary>
    public static byte[] Serialize(IReadOnlyList<SafeTensorInfo> ordered, IEnumerable<KeyValuePair<string, string>>? metadata)
    {
        var sb = new StringBuilder("{");
        bool first = true;
        if (metadata is not null)
        {
            sb.Append("\"__metadata__\":{");
            bool firstKey = true;
            foreach (var (k, v) in metadata)
            {
                if (!firstKey) sb.Append(',');
                firstKey = false;
                AppendString(sb, k); sb.Append(':'); AppendString(sb, v);
            }
            sb.Append('}');
            first = false;
        }
        foreach (var t in ordered)
        {
            if (!first) sb.Append(',');
            first = false;
            AppendString(sb, t.Name);
            sb.Append(":{\"dtype\":\"").Append(t.DType.Name()).Append("\",\"shape\":[")
              .Append(string.Join(",", t.Shape)).Append("],\"data_offsets\":[")
              .Append(t.Begin).Append(',').Append(t.End).Append("]}");
        }
        sb.Append('}');
        var bytes = Encoding.UTF8.GetBytes(sb.ToString());
        int pad = (8 - bytes.Length % 8) % 8;
        if (pad == 0) return bytes;
        var padded = new byte[bytes.Length + pad];
        bytes.CopyTo(padded, 0);
        padded.AsSpan(bytes.Length).Fill((byte)' ');
        return padded;
    }

    /// <summary>JSON string escaping as serde_json writes it: only ", \ and control characters.</summary>
    static void AppendString(StringBuilder sb, string s)
    {
        sb.Append('"');
        foreach (char c in s)
        {
            switch (c)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\b': sb.Append("\\b"); break;
                case '\f': sb.Append("\\f"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                default:
                    if (c < 0x20) sb.Append("\\u").Append(((int)c).ToString("x4"));
                    else sb.Append(c);
                    break;
            }
        }
        sb.Append('"');
    }

    /// <summary>Byte-wise UTF-8 order of names (Rust's String order), used to sort tensors.</summary>
    public static int CompareNames(string a, string b)
        => Encoding.UTF8.GetBytes(a).AsSpan().SequenceCompareTo(Encoding.UTF8.GetBytes(b));
}
