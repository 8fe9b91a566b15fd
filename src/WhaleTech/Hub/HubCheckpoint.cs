// Loading Hugging Face DeepSeek-V2 / V3 checkpoint folders into a DeepSeekLM:
//   config.json (HubConfig: every spelling in use)  +  model.safetensors | model.safetensors.index.json shards
//   FP8 block-scaled weights (x.weight F8_E4M3 + x.weight_scale_inv) dequantized on load (CheckpointReader),
//   block size from quantization_config.weight_block_size.
//
// The stored names are seen through a view that maps them to WhaleTech's (= the Hub's) names:
//   model.layers.{l}.mlp.experts.{e}.{gate,up,down}_proj.weight     per-expert keys (Hub files): as they are
//   model.layers.{l}.mlp.experts.gate_up_proj [E, 2F, D]            transformers 5's fused experts: split into
//   model.layers.{l}.mlp.experts.down_proj    [E, D, F]             per-expert gate [F, D], up [F, D], down [D, F]
//   "rope_interleave": false                                        RoPE rows of q_(b_)proj / kv_a_proj_with_mqa
//                                                                   permuted to DeepSeek's interleaved pairs
//   model.layers.{L}.* with L ≥ num_hidden_layers                   multi-token-prediction (MTP) layers: loaded
//                                                                   when the model has modules of those names;
//                                                                   otherwise a clear error (strict) or reported
//                                                                   as unexpected (lenient)
// Missing and unexpected names are reported by name (StateDict): strict by default, lenient on request.
//
// Shapes: E routed experts, F moe_intermediate_size, D hidden_size, H heads, Dn/Dr/Dv head dims, Dc kv_lora_rank.
using System.Text.RegularExpressions;
using TorchSharp;
using WhaleTech.Model;
using WhaleTech.Runtime;
using static TorchSharp.torch;
using WhaleTech.Core;

using WhaleTech.IO;

namespace WhaleTech.Hub;

public static partial class HubCheckpoint
{
    /// <summary>Loads a checkpoint folder into a new model (fp32 on the CPU unless <paramref name="dtype"/> / <paramref name="device"/> say otherwise).</summary>
    public static (DeepSeekLM Model, LoadReport Report) Load(string folder, bool strict = true, Device? device = null, ScalarType? dtype = null)
    {
        if (!Directory.Exists(folder)) throw new WhaleArgumentException("checkpoint folder", folder, "must be an existing folder with config.json and model.safetensors (or an index)");
        var config = HubConfig.Load(folder);
        var reader = CheckpointReader.Open(folder, dequantizeFp8: true, fp8BlockSize: HubConfig.Fp8BlockSize(config, Path.Combine(folder, HubConfig.FileName)) ?? Fp8BlockDequant.BlockSize);
        var model = new DeepSeekLM(config);
        try
        {
            if (dtype is { } t) model.to(t);
            if (device is not null) model.to(device);
            model.eval();
            var report = LoadInto(model, reader, strict);
            return (model, report);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>Loads an open checkpoint into an existing model, through the name view.</summary>
    public static LoadReport LoadInto(DeepSeekLM model, CheckpointReader reader, bool strict = true)
    {
        var view = HubTensorView.Create(reader, model.Config);
        var wanted = new HashSet<string>(StateDict.Entries(model).Select(e => e.Name), StringComparer.Ordinal);
        var mtp = view.Names.Where(n => MtpLayer(n, model.Config) is not null && !wanted.Contains(n)).ToList();
        if (strict && mtp.Count > 0)
        {
            var layers = mtp.Select(n => MtpLayer(n, model.Config)!.Value).Distinct().OrderBy(l => l);
            throw new WhaleFormatException(reader.Folder,
                $"the checkpoint has {mtp.Count} multi-token-prediction (MTP) tensor(s) in layer(s) {string.Join(", ", layers.Select(l => $"model.layers.{l}.*"))} " +
                $"(num_nextn_predict_layers = {model.Config.NumNextnPredictLayers}), e.g. {string.Join(", ", mtp.Take(4))}; this model has no MTP modules to load them into. " +
                "MTP modules are needed to load them; or load leniently (strict: false, CLI --lenient) to skip them — they are then reported as unexpected.");
        }
        return StateDict.Load(model, view.Names, view.Describe, view.Load, strict, reader.Folder);
    }

    static readonly Regex LayerIndex = new(@"^model\.layers\.(\d+)\.", RegexOptions.CultureInvariant);

    /// <summary>The layer index of an MTP tensor name (model.layers.{L}.* with L ≥ num_hidden_layers), else null.</summary>
    public static int? MtpLayer(string name, ModelConfig config)
    {
        var m = LayerIndex.Match(name);
        return m.Success && int.TryParse(m.Groups[1].Value, out var l) && l >= config.NumHiddenLayers ? l : null;
    }
}

/// <summary>A checkpoint's tensors under WhaleTech's names (fused experts split, RoPE rows re-interleaved).</summary>
public sealed class HubTensorView
{
    readonly CheckpointReader _reader;
    readonly Dictionary<string, Source> _sources;

    abstract record Source;
    sealed record Direct(string Stored) : Source;
    sealed record FusedSlice(string Stored, long Expert, long RowStart, long Rows) : Source;   // gate/up rows of gate_up_proj [E, 2F, D]
    sealed record FusedWhole(string Stored, long Expert) : Source;                           // down_proj [E, D, F]
    sealed record RopePermuted(string Stored, long[] Permutation) : Source;                   // rows re-ordered

    public IReadOnlyList<string> Names { get; }

    HubTensorView(CheckpointReader reader, Dictionary<string, Source> sources)
    {
        _reader = reader;
        _sources = sources;
        Names = sources.Keys.OrderBy(n => n, StringComparer.Ordinal).ToList();
    }

    static readonly Regex Fused = new(@"^(model\.layers\.\d+\.mlp\.experts)\.(gate_up_proj|down_proj)$", RegexOptions.CultureInvariant);

    public static HubTensorView Create(CheckpointReader reader, ModelConfig config)
    {
        var sources = new Dictionary<string, Source>(StringComparer.Ordinal);
        bool interleaved = HubConfig.RopeInterleaved(config);
        foreach (var name in reader.Names)
        {
            var m = Fused.Match(name);
            if (m.Success)
            {
                var (_, shape) = reader.Describe(name);
                if (shape.Length != 3)
                    throw new WhaleFormatException(reader.Folder, $"fused expert tensor '{name}' has shape [{string.Join(", ", shape)}]; expected 3-D [E, 2F, D] or [E, D, F]");
                string prefix = m.Groups[1].Value;
                for (long e = 0; e < shape[0]; e++)
                {
                    if (m.Groups[2].Value == "gate_up_proj")
                    {
                        if (shape[1] % 2 != 0) throw new WhaleFormatException(reader.Folder, $"'{name}' [{string.Join(", ", shape)}]: dim 1 must be 2F (gate rows, then up rows)");
                        sources[$"{prefix}.{e}.gate_proj.weight"] = new FusedSlice(name, e, 0, shape[1] / 2);
                        sources[$"{prefix}.{e}.up_proj.weight"] = new FusedSlice(name, e, shape[1] / 2, shape[1] / 2);
                    }
                    else sources[$"{prefix}.{e}.down_proj.weight"] = new FusedWhole(name, e);
                }
                continue;
            }
            if (!interleaved && RopeRows(name, config) is { } perm)
            {
                var (_, shape) = reader.Describe(name);
                if (shape[0] != perm.Length)
                    throw new WhaleFormatException(reader.Folder, $"'{name}' has {shape[0]} rows; the config implies {perm.Length}");
                sources[name] = new RopePermuted(name, perm);
                continue;
            }
            sources[name] = new Direct(name);
        }
        return new HubTensorView(reader, sources);
    }

    /// <summary>(dtype, shape) of a viewed tensor.</summary>
    public (SafeTensorsDType DType, long[] Shape) Describe(string name)
    {
        switch (_sources[name])
        {
            case FusedSlice s:
            {
                var (t, shape) = _reader.Describe(s.Stored);
                return (t, [s.Rows, shape[2]]);
            }
            case FusedWhole w:
            {
                var (t, shape) = _reader.Describe(w.Stored);
                return (t, [shape[1], shape[2]]);
            }
            case RopePermuted r: return _reader.Describe(r.Stored);
            case Direct d: return _reader.Describe(d.Stored);
            default: throw new InvalidOperationException();
        }
    }

    /// <summary>Reads a viewed tensor (the caller disposes it).</summary>
    public Tensor Load(string name, Device device)
    {
        switch (_sources[name])
        {
            case FusedSlice s:
            {
                using var all = _reader.Load(s.Stored, device);                          // [E, 2F, D]
                return all.select(0, s.Expert).narrow(0, s.RowStart, s.Rows).contiguous(); // [F, D]
            }
            case FusedWhole w:
            {
                using var all = _reader.Load(w.Stored, device);                          // [E, D, F]
                return all.select(0, w.Expert).contiguous();                             // [D, F]
            }
            case RopePermuted r:
            {
                using var stored = _reader.Load(r.Stored, device);
                using var index = torch.tensor(r.Permutation, device: device);
                return stored.index_select(0, index);
            }
            case Direct d: return _reader.Load(d.Stored, device);
            default: throw new InvalidOperationException();
        }
    }

    static readonly Regex RopeWeight = new(@"^model\.layers\.\d+\.self_attn\.(q_proj|q_b_proj|kv_a_proj_with_mqa)\.(weight|bias)$", RegexOptions.CultureInvariant);

    /// <summary>For a tensor whose rows include RoPE dims: the row order that turns transformers' non-interleaved
    /// layout (pairs (i, i + Dr/2)) into DeepSeek's interleaved one (pairs (2i, 2i+1)); null for other tensors.
    /// Rotating the permuted rows pairwise equals rotate_half on the stored rows, and q·k is unchanged because
    /// queries and keys are permuted alike.</summary>
    static long[]? RopeRows(string name, ModelConfig cfg)
    {
        var m = RopeWeight.Match(name);
        if (!m.Success || !cfg.IsMla) return null;
        int dr = cfg.QkRopeHeadDim, half = dr / 2;
        void Interleave(long[] p, long start)
        {
            for (int i = 0; i < half; i++) { p[start + 2 * i] = start + i; p[start + 2 * i + 1] = start + half + i; }
        }
        if (m.Groups[1].Value == "kv_a_proj_with_mqa")
        {
            var p = Enumerable.Range(0, cfg.KvLoraRank + dr).Select(i => (long)i).ToArray();    // [Dc | Dr]
            Interleave(p, cfg.KvLoraRank);
            return p;
        }
        if (m.Groups[2].Value == "bias") return null; // q_proj / q_b_proj have no bias
        int head = cfg.QkNopeHeadDim + dr;
        var q = Enumerable.Range(0, cfg.NumAttentionHeads * head).Select(i => (long)i).ToArray(); // H × [Dn | Dr]
        for (int h = 0; h < cfg.NumAttentionHeads; h++) Interleave(q, (long)h * head + cfg.QkNopeHeadDim);
        return q;
    }
}
