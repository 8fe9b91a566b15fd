// Reading a Hugging Face checkpoint's weights from a folder: either one `model.safetensors`, or shards
// listed by `model.safetensors.index.json` ({"metadata": {...}, "weight_map": {tensor name: shard file}}).
// Block-scaled FP8 weights (DeepSeek-V3: `x.weight` F8_E4M3 + `x.weight_scale_inv` F32) are dequantized
// to float32 on load by default (Fp8BlockDequant), and then appear under `x.weight` alone.
//
//   var ckpt = CheckpointReader.Open("DeepSeek-V3-tiny/");
//   foreach (var (name, t) in ckpt.ReadAll()) using (t) ...
//
// Headers of all shards are read and cross-checked when the checkpoint is opened; tensor data is read
// only when a tensor is asked for.
using System.Text.Json;
using WhaleTech.Runtime;
using static TorchSharp.torch;

namespace WhaleTech.IO;

public sealed class CheckpointReader
{
    public const string SingleFileName = "model.safetensors";
    public const string IndexFileName = "model.safetensors.index.json";

    readonly Dictionary<string, SafeTensorsFile> _fileOf;   // stored tensor name → the file that holds it
    readonly Dictionary<string, string> _scaleOf;           // fp8 weight name → its scale_inv name (when dequantizing)
    readonly List<string> _names;

    /// <summary>The checkpoint folder.</summary>
    public string Folder { get; }
    /// <summary>The index's "metadata" (values as raw JSON text, e.g. "total_size" → "12345"); null for a single file.</summary>
    public IReadOnlyDictionary<string, string>? IndexMetadata { get; }
    /// <summary>The safetensors files, in the order first named.</summary>
    public IReadOnlyList<SafeTensorsFile> Files { get; }
    public bool DequantizeFp8 { get; }
    public int Fp8BlockSize { get; }

    /// <summary>Tensor names as the model sees them (scale_inv tensors folded away when dequantizing), sorted.</summary>
    public IReadOnlyList<string> Names => _names;
    public bool Contains(string name) => _names.BinarySearch(name, StringComparer.Ordinal) >= 0;

    CheckpointReader(string folder, Dictionary<string, SafeTensorsFile> fileOf, IReadOnlyDictionary<string, string>? indexMetadata,
                     bool dequantize, int blockSize, string source)
    {
        Folder = folder;
        _fileOf = fileOf;
        IndexMetadata = indexMetadata;
        Files = fileOf.Values.Distinct().ToList();
        DequantizeFp8 = dequantize;
        Fp8BlockSize = blockSize;
        _scaleOf = new Dictionary<string, string>(StringComparer.Ordinal);
        if (dequantize)
        {
            foreach (var scaleName in fileOf.Keys.Where(n => n.EndsWith(".weight" + Fp8BlockDequant.ScaleSuffix, StringComparison.Ordinal)))
            {
                var weightName = scaleName[..^Fp8BlockDequant.ScaleSuffix.Length];
                if (!fileOf.TryGetValue(weightName, out var wf)) continue;
                var w = wf[weightName];
                if (w.DType is not (SafeTensorsDType.F8_E4M3 or SafeTensorsDType.F8_E5M2)) continue;
                var s = fileOf[scaleName][scaleName];
                if (w.Shape.Length != 2)
                    throw new WhaleFormatException(source, $"FP8 weight '{weightName}' has shape [{string.Join(", ", w.Shape)}]; block scaling needs 2-D [out, in]");
                var expected = Fp8BlockDequant.ScaleShape(w.Shape, blockSize);
                if (!s.Shape.SequenceEqual(expected) || !s.DType.IsFloatingPoint())
                    throw new WhaleFormatException(source, $"'{scaleName}' is {s.DType} [{string.Join(", ", s.Shape)}] but FP8 weight '{weightName}' [{string.Join(", ", w.Shape)}] needs a float scale of shape [{string.Join(", ", expected)}] ({blockSize}×{blockSize} blocks)");
                _scaleOf[weightName] = scaleName;
            }
        }
        var hidden = new HashSet<string>(_scaleOf.Values, StringComparer.Ordinal);
        _names = fileOf.Keys.Where(n => !hidden.Contains(n)).OrderBy(n => n, StringComparer.Ordinal).ToList();
    }

    // ---- opening --------------------------------------------------------------------------------

    /// <summary>Opens a checkpoint: a folder (model.safetensors, else model.safetensors.index.json), an
    /// index file, or a single .safetensors file.</summary>
    public static CheckpointReader Open(string path, bool dequantizeFp8 = true, int fp8BlockSize = Fp8BlockDequant.BlockSize)
    {
        Guard.Positive("fp8BlockSize", fp8BlockSize);
        if (Directory.Exists(path))
        {
            var single = Path.Combine(path, SingleFileName);
            var index = Path.Combine(path, IndexFileName);
            if (File.Exists(single)) return OpenSingle(single, dequantizeFp8, fp8BlockSize);
            if (File.Exists(index)) return OpenIndex(index, dequantizeFp8, fp8BlockSize);
            throw new WhaleArgumentException("checkpoint", path, $"must be a folder holding {SingleFileName} or {IndexFileName}");
        }
        if (!File.Exists(path)) throw new WhaleArgumentException("checkpoint", path, "must name an existing folder, .safetensors file or index .json");
        return path.EndsWith(".json", StringComparison.OrdinalIgnoreCase)
            ? OpenIndex(path, dequantizeFp8, fp8BlockSize)
            : OpenSingle(path, dequantizeFp8, fp8BlockSize);
    }

    static CheckpointReader OpenSingle(string file, bool dequantize, int blockSize)
    {
        var f = SafeTensorsFile.Open(file);
        var map = f.Names.ToDictionary(n => n, _ => f, StringComparer.Ordinal);
        return new CheckpointReader(Path.GetDirectoryName(Path.GetFullPath(file))!, map, null, dequantize, blockSize, file);
    }

    static CheckpointReader OpenIndex(string indexPath, bool dequantize, int blockSize)
    {
        var folder = Path.GetDirectoryName(Path.GetFullPath(indexPath))!;
        var (metadata, weightMap) = ParseIndex(File.ReadAllBytes(indexPath), indexPath);
        var shards = new Dictionary<string, SafeTensorsFile>(StringComparer.Ordinal);
        var fileOf = new Dictionary<string, SafeTensorsFile>(StringComparer.Ordinal);
        var missing = new List<string>();
        foreach (var (name, shard) in weightMap)
        {
            if (!shards.TryGetValue(shard, out var f))
            {
                var full = Path.GetFullPath(Path.Combine(folder, shard));
                if (Path.IsPathRooted(shard) || !full.StartsWith(folder + Path.DirectorySeparatorChar, StringComparison.Ordinal))
                    throw new WhaleFormatException(indexPath, $"weight_map sends '{name}' to '{shard}', which is outside the checkpoint folder");
                if (!File.Exists(full))
                    throw new WhaleFormatException(indexPath, $"weight_map sends '{name}' to shard '{shard}', which does not exist in {folder}");
                shards[shard] = f = SafeTensorsFile.Open(full);
            }
            if (f.Contains(name)) fileOf[name] = f;
            else missing.Add($"'{name}' (→ {shard})");
        }
        if (missing.Count > 0)
            throw new WhaleFormatException(indexPath, $"{missing.Count} tensor(s) named in weight_map are not in their shard: " +
                string.Join(", ", missing.Take(20)) + (missing.Count > 20 ? ", ..." : ""));
        return new CheckpointReader(folder, fileOf, metadata, dequantize, blockSize, indexPath);
    }

    /// <summary>Parses an index file strictly: a JSON object with a "weight_map" object of strings
    /// (no duplicate names) and an optional "metadata" object.</summary>
    internal static (Dictionary<string, string>? Metadata, List<KeyValuePair<string, string>> WeightMap) ParseIndex(byte[] json, string source)
    {
        Dictionary<string, string>? metadata = null;
        List<KeyValuePair<string, string>>? map = null;
        try
        {
            var r = new Utf8JsonReader(json, new JsonReaderOptions { MaxDepth = 16 });
            if (!r.Read() || r.TokenType != JsonTokenType.StartObject) throw new WhaleFormatException(source, "index must be a JSON object");
            while (r.Read() && r.TokenType != JsonTokenType.EndObject)
            {
                var key = r.GetString()!;
                r.Read();
                if (key == "weight_map" && map is null)
                {
                    if (r.TokenType != JsonTokenType.StartObject) throw new WhaleFormatException(source, "weight_map must be an object {tensor name: shard file}");
                    map = [];
                    var seen = new HashSet<string>(StringComparer.Ordinal);
                    while (r.Read() && r.TokenType != JsonTokenType.EndObject)
                    {
                        var name = r.GetString()!;
                        r.Read();
                        if (r.TokenType != JsonTokenType.String) throw new WhaleFormatException(source, $"weight_map['{name}'] must be a file name string");
                        if (!seen.Add(name)) throw new WhaleFormatException(source, $"weight_map names '{name}' twice");
                        map.Add(new(name, r.GetString()!));
                    }
                }
                else if (key == "metadata" && metadata is null)
                {
                    if (r.TokenType == JsonTokenType.Null) continue;
                    if (r.TokenType != JsonTokenType.StartObject) throw new WhaleFormatException(source, "metadata must be an object");
                    metadata = new Dictionary<string, string>(StringComparer.Ordinal);
                    while (r.Read() && r.TokenType != JsonTokenType.EndObject)
                    {
                        var k = r.GetString()!;
                        r.Read();
                        using var value = JsonDocument.ParseValue(ref r);
                        var text = value.RootElement.ValueKind == JsonValueKind.String ? value.RootElement.GetString()! : value.RootElement.GetRawText();
                        if (!metadata.TryAdd(k, text)) throw new WhaleFormatException(source, $"metadata names '{k}' twice");
                    }
                }
                else if (key is "weight_map" or "metadata") throw new WhaleFormatException(source, $"duplicate key '{key}'");
                else r.Skip();
            }
        }
        catch (JsonException e) { throw new WhaleFormatException(source, $"not valid JSON ({e.Message})", e); }
        catch (InvalidOperationException e) { throw new WhaleFormatException(source, $"not valid JSON ({e.Message})", e); }
        return (metadata, map ?? throw new WhaleFormatException(source, "index has no weight_map"));
    }

    // ---- tensors --------------------------------------------------------------------------------

    /// <summary>dtype and shape of a tensor as Load returns it (F32 for a dequantized FP8 weight).</summary>
    public (SafeTensorsDType DType, long[] Shape) Describe(string name)
    {
        var info = Stored(name);
        return _scaleOf.ContainsKey(name) ? (SafeTensorsDType.F32, info.Shape) : (info.DType, info.Shape);
    }

    /// <summary>Reads one tensor (dequantized to float32 when it is a block-scaled FP8 weight).</summary>
    public Tensor Load(string name, Device? device = null)
    {
        _ = Stored(name);
        if (!_scaleOf.TryGetValue(name, out var scaleName)) return _fileOf[name].ToTensor(name, device);
        using var w = _fileOf[name].ToTensor(name, device);          // [O, I] float8
        using var s = _fileOf[scaleName].ToTensor(scaleName, device); // [Bo, Bi]
        return Fp8BlockDequant.Dequantize(w, s, Fp8BlockSize);       // [O, I] float32
    }

    /// <summary>Yields every tensor by name (sorted); the caller disposes each.</summary>
    public IEnumerable<(string Name, Tensor Tensor)> ReadAll(Device? device = null)
    {
        foreach (var n in _names) yield return (n, Load(n, device));
    }

    SafeTensorInfo Stored(string name)
    {
        if (!Contains(name))
            throw new WhaleArgumentException("tensor name", name, $"must be one of the {_names.Count} tensors of the checkpoint in {Folder}");
        return _fileOf[name][name];
    }
}
