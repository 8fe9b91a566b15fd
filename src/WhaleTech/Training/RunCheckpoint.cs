// A checkpoint of any training loop that is not an LmTrainer run (the experiments' loops): the module's weights
// and buffers (weights.bin, TorchSharp's state_dict format, so MoE bias buffers travel with them), the AdamW state
// (optimizer.safetensors: per-parameter step, m and v), and state.json — the optimizer steps done, the data
// stream's position (batches drawn) and the loop's own state as JSON (a loss curve, load history, …). Written
// through IO/AtomicFolder, so a kill mid-write leaves the previous checkpoint whole; never from NaN/Inf weights.
using System.Text.Json;
using TorchSharp;
using WhaleTech.IO;
using static TorchSharp.torch;

namespace WhaleTech.Training;

/// <summary>What a <see cref="RunCheckpoint"/> stores besides weights and optimizer: steps done, data position, the loop's state.</summary>
public sealed record RunCheckpointState(int Step, long DataPosition, JsonElement? State);

public static class RunCheckpoint
{
    public const string WeightsFile = "weights.bin", OptimizerFile = "optimizer.safetensors", StateFile = "state.json";

    static readonly JsonSerializerOptions Json = new() { WriteIndented = true, NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals };

    /// <summary>Writes <paramref name="model"/>, <paramref name="optimizer"/>, the step, the data position and
    /// <paramref name="state"/> (any JSON-serializable value, or null) into <paramref name="folder"/>, replacing it atomically.</summary>
    public static void Save(string folder, nn.Module model, AdamWOptimizer optimizer, int step, long dataPosition, object? state = null)
    {
        foreach (var (name, p) in model.named_parameters())
            if (!torch.isfinite(p).all().item<bool>())
                throw new Runtime.WhaleException($"refusing to write a checkpoint: parameter {name} holds NaN or Inf (the previous checkpoint is kept)");
        var stateElement = state is null ? (JsonElement?)null : JsonSerializer.SerializeToElement(state, state.GetType(), Json);
        AtomicFolder.Replace(folder, tmp =>
        {
            using (var fs = new FileStream(Path.Combine(tmp, WeightsFile), FileMode.CreateNew))
            using (var w = new BinaryWriter(fs)) model.save(w);
            optimizer.Save(Path.Combine(tmp, OptimizerFile));
            AtomicFile.WriteAllText(Path.Combine(tmp, StateFile), JsonSerializer.Serialize(new RunCheckpointState(step, dataPosition, stateElement), Json));
        });
    }

    /// <summary>True when <paramref name="folder"/> (or its ".old" twin) holds a complete checkpoint.</summary>
    public static bool Exists(string folder) => AtomicFolder.Existing(folder) is { } f && File.Exists(Path.Combine(f, StateFile));

    /// <summary>Loads weights and optimizer state into <paramref name="model"/> / <paramref name="optimizer"/> (built as
    /// for the original run) and returns the stored step, data position and state.</summary>
    public static RunCheckpointState Load(string folder, nn.Module model, AdamWOptimizer optimizer)
    {
        var full = AtomicFolder.Existing(folder) ?? throw new Runtime.WhaleArgumentException("checkpoint", folder, "must be an existing checkpoint folder");
        var statePath = Path.Combine(full, StateFile);
        if (!File.Exists(statePath)) throw new Runtime.WhaleArgumentException("checkpoint", folder, $"must be a folder written by RunCheckpoint.Save ({StateFile} missing)");
        RunCheckpointState state;
        try { state = JsonSerializer.Deserialize<RunCheckpointState>(File.ReadAllText(statePath), Json) ?? throw new JsonException("null"); }
        catch (JsonException e) { throw new Runtime.WhaleFormatException(statePath, "not a valid run checkpoint state: " + e.Message, e); }
        var weights = Path.Combine(full, WeightsFile);
        try { model.load(weights); }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or EndOfStreamException or IOException)
        { throw new Runtime.WhaleFormatException(weights, "not the weights of this run's model (" + e.Message + ")", e); }
        optimizer.Load(Path.Combine(full, OptimizerFile));
        return state;
    }

    /// <summary>The stored loop state as <typeparamref name="T"/> (default when none was stored).</summary>
    public static T? StateAs<T>(RunCheckpointState s) => s.State is { } e ? e.Deserialize<T>(Json) : default;
}
