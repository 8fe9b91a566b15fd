// Saving a TorchSharp module's weights to safetensors and loading them back by name, the way PyTorch's
// state_dict / load_state_dict and Hugging Face's from_pretrained do.
//
// Names are exactly what the module reports (named_parameters() + persistent named_buffers()), with an
// optional prefix in front; the model uses Hugging Face names ("model.layers.0.self_attn.q_a_proj.weight"),
// so its files are Hub checkpoints. Loading checks every name, shape and dtype first and reports ALL
// problems in one message; only then does it copy, so a failed load leaves the module untouched.
//   strict (default): a missing or unexpected name is an error.
//   lenient: missing names keep their current values, unexpected ones are skipped; both are reported.
// Shape mismatches and integer/float mismatches are errors in both modes; a float tensor loads into a
// float parameter of another precision (converted, e.g. a dequantized FP8 weight into a BF16 model).
// A module whose checkpoint names are not its TorchSharp names (DeepSeekLM with multi-token prediction modules:
// the Hub's MTP names model.layers.{N+k−1}.… and the Hub's copies of the shared embedding and head) says so by
// implementing ICheckpointLayout; this file knows no model type.
using WhaleTech.Runtime;
using static TorchSharp.torch;

namespace WhaleTech.IO;

/// <summary>What a load did: names copied, names the module has but the file lacks, names the file has but the module lacks.</summary>
public sealed record LoadReport(IReadOnlyList<string> Loaded, IReadOnlyList<string> Missing, IReadOnlyList<string> Unexpected)
{
    public bool IsExact => Missing.Count == 0 && Unexpected.Count == 0;
}

/// <summary>A module whose checkpoint differs from its named_parameters(): renamed entries and extra stored copies
/// of shared tensors (which a load checks against their source instead of loading).</summary>
public interface ICheckpointLayout
{
    /// <summary>The checkpoint's (name, tensor) list, given the module's own prefixed entries.</summary>
    List<(string Name, Tensor Tensor)> CheckpointEntries(List<(string Name, Tensor Tensor)> entries, string prefix);
    /// <summary>Stored copies of shared tensors: (copy name, name of the tensor it copies, that tensor).</summary>
    IEnumerable<(string Copy, string Source, Tensor Tensor)> SharedCopies(string prefix);
}

public static class StateDict
{
    /// <summary>The module's parameters and persistent buffers, named as the module reports them, prefixed.
    /// Buffers a submodule declares non-persistent (<see cref="INonPersistentBuffers"/>) are left out.</summary>
    public static List<(string Name, Tensor Tensor)> Entries(nn.Module module, string prefix = "")
    {
        ArgumentNullException.ThrowIfNull(module);
        var skip = NonPersistentBuffers.Names(module);
        var list = new List<(string, Tensor)>();
        foreach (var (name, p) in module.named_parameters()) list.Add((prefix + name, p));
        foreach (var (name, b) in module.named_buffers()) if (!skip.Contains(name)) list.Add((prefix + name, b));
        return module is ICheckpointLayout layout ? layout.CheckpointEntries(list, prefix) : list;
    }

    /// <summary>Loads from any tensor source: its names, each one's stored (dtype, shape), and a reader.
    /// Used by <see cref="HubCheckpoint"/> for views that rename or split stored tensors.</summary>
    public static LoadReport Load(nn.Module module, IReadOnlyList<string> names, Func<string, (SafeTensorsDType DType, long[] Shape)> describe,
                                  Func<string, Device, Tensor> load, bool strict, string source, string prefix = "")
        => LoadCore(module, names, n => describe(n), load, strict, prefix, source);

    /// <summary>Writes the module's weights to one safetensors file (atomically). Metadata defaults to
    /// {"format": "pt"}, which transformers expects.</summary>
    public static void Save(nn.Module module, string path, IReadOnlyDictionary<string, string>? metadata = null, string prefix = "")
        => SafeTensorsWriter.Write(path, Entries(module, prefix), metadata ?? new Dictionary<string, string> { ["format"] = "pt" });

    /// <summary>Saves a model as a Hub-style folder: config.json (the given text, atomically) + model.safetensors.</summary>
    public static void SavePretrained(nn.Module module, string configJson, string folder, string prefix = "")
    {
        ArgumentNullException.ThrowIfNull(configJson);
        Directory.CreateDirectory(folder);
        AtomicFile.WriteAllText(Path.Combine(folder, "config.json"), configJson);
        Save(module, Path.Combine(folder, CheckpointReader.SingleFileName), prefix: prefix);
    }

    /// <summary>Loads weights from a checkpoint folder (single or sharded, FP8 dequantized) or a .safetensors file.</summary>
    public static LoadReport Load(nn.Module module, string path, bool strict = true, string prefix = "")
        => Load(module, CheckpointReader.Open(path), strict, prefix);

    /// <summary>Loads weights from an open checkpoint.</summary>
    public static LoadReport Load(nn.Module module, CheckpointReader checkpoint, bool strict = true, string prefix = "")
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        return LoadCore(module, checkpoint.Names, checkpoint.Describe, checkpoint.Load, strict, prefix, checkpoint.Folder);
    }

    /// <summary>Loads weights from tensors in memory (names as keys).</summary>
    public static LoadReport Load(nn.Module module, IReadOnlyDictionary<string, Tensor> tensors, bool strict = true, string prefix = "")
    {
        ArgumentNullException.ThrowIfNull(tensors);
        return LoadCore(module, tensors.Keys.ToList(),
            n => (SafeTensorsDTypes.FromScalarType(tensors[n].dtype, $"dtype of '{n}'"), tensors[n].shape),
            (n, device) => tensors[n].to(device), strict, prefix, "<state dict>");
    }

    static LoadReport LoadCore(nn.Module module, IReadOnlyList<string> available, Func<string, (SafeTensorsDType, long[])> describe,
                               Func<string, Device, Tensor> load, bool strict, string prefix, string source)
    {
        var targets = Entries(module, prefix);
        var have = new HashSet<string>(available, StringComparer.Ordinal);
        var wanted = new HashSet<string>(targets.Select(t => t.Name), StringComparer.Ordinal);
        var missing = targets.Select(t => t.Name).Where(n => !have.Contains(n)).ToList();
        // A zero-element tensor the model has no parameter for is a zero-width block (DeepSeek's code and transformers'
        // V3 class build shared_experts with n_shared_experts = 0 as Linear(D, 0)): nothing to load, not "unexpected".
        var unexpected = available.Where(n => !wanted.Contains(n) && !describe(n).Item2.Contains(0L)).OrderBy(n => n, StringComparer.Ordinal).ToList();

        var problems = new List<string>();
        if (strict && missing.Count > 0) problems.Add($"missing {missing.Count}: {string.Join(", ", missing)}");
        if (strict && unexpected.Count > 0) problems.Add($"unexpected {unexpected.Count}: {string.Join(", ", unexpected)}");
        foreach (var (name, target) in targets.Where(t => have.Contains(t.Name)))
        {
            var (dtype, shape) = describe(name);
            if (!shape.SequenceEqual(target.shape))
                problems.Add($"'{name}' has shape [{string.Join(", ", shape)}] in the file but [{string.Join(", ", target.shape)}] in the model");
            var targetType = SafeTensorsDTypes.FromScalarType(target.dtype, $"dtype of '{name}'");
            if (dtype != targetType && !(dtype.IsFloatingPoint() && targetType.IsFloatingPoint()))
                problems.Add($"'{name}' is {dtype} in the file but {targetType} in the model");
        }
        // The Hub stores copies of the embedding/head shared with the MTP modules; they must equal the main tensors
        // (strict: an error naming the copy; lenient: the main tensor wins and the copy is reported as skipped).
        var skipped = new HashSet<string>(StringComparer.Ordinal);
        if (module is ICheckpointLayout layout && problems.Count == 0)
            foreach (var (copy, sourceName, _) in layout.SharedCopies(prefix).Where(c => have.Contains(c.Copy) && have.Contains(c.Source)))
            {
                using var scope = NewDisposeScope();
                if (describe(copy).Item2.SequenceEqual(describe(sourceName).Item2) && load(copy, CPU).eq(load(sourceName, CPU)).all().item<bool>()) continue;
                if (strict) problems.Add($"'{copy}' must equal '{sourceName}' (the MTP module shares that tensor with the main model)");
                else { skipped.Add(copy); unexpected.Add(copy); }
            }
        if (problems.Count > 0)
            throw new WhaleFormatException(source, $"cannot load into {module.GetName()} ({(strict ? "strict" : "lenient")}): " + string.Join("; ", problems));

        var loaded = new List<string>();
        using (no_grad())
        {
            foreach (var (name, target) in targets.Where(t => have.Contains(t.Name) && !skipped.Contains(t.Name)))
            {
                using var scope = NewDisposeScope();
                target.copy_(load(name, target.device)); // converts float precision when they differ
                loaded.Add(name);
            }
        }
        return new LoadReport(loaded, missing, unexpected);
    }
}
