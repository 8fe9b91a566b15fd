// Checkpoint and resume of a GRPO run: policy and reference weights (TorchSharp's module format), the
// AdamW state (optimizer.safetensors: step, m, v per parameter), and state.json (step, token count, options). Every file is written to a temporary name and
// renamed (IO/AtomicFile), so a kill mid-save leaves the previous checkpoint whole. Because every random
// draw is a function of (seed, step, slot, sample) (RandomStreams.cs), a resumed run continues exactly as
// the uninterrupted one would have.
using System.Text.Json;
using System.Text.Json.Serialization;
using WhaleTech.IO;
using WhaleTech.Model;
using WhaleTech.Runtime;
using WhaleTech.Core;

namespace WhaleTech.Grpo;

public static class GrpoCheckpoint
{
    public const string PolicyFile = "policy.bin", ReferenceFile = "reference.bin", OptimizerFile = "optimizer.safetensors", StateFile = "state.json";

    public static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower) },
    };

    sealed record State(int Step, long NumTokens, GrpoOptions Options, ModelConfig Model);

    public static void Save(GrpoTrainer trainer, string dir)
    {
        Directory.CreateDirectory(dir);
        SaveModel(trainer.Policy, Path.Combine(dir, PolicyFile));
        if (trainer.Reference is not null) SaveModel(trainer.Reference, Path.Combine(dir, ReferenceFile));
        trainer.Optimizer.Save(Path.Combine(dir, OptimizerFile));                       // atomic (SafeTensorsWriter)
        // state.json last: its presence marks a complete checkpoint.
        AtomicFile.WriteAllText(Path.Combine(dir, StateFile),
            JsonSerializer.Serialize(new State(trainer.Step, trainer.NumTokens, trainer.Options, trainer.Policy.Config), Json));
    }

    public static void SaveModel(DeepSeekLM model, string path)
        => AtomicFile.Write(path, s => { using var w = new BinaryWriter(s, System.Text.Encoding.UTF8, leaveOpen: true); model.save(w); });

    public static void LoadModel(DeepSeekLM model, string path)
    {
        if (!File.Exists(path)) throw new WhaleArgumentException("checkpoint", path, "must name an existing weights file");
        try { model.load(path); }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or EndOfStreamException or IOException)
        { throw new WhaleFormatException(path, "not a WhaleTech policy for this model configuration (" + e.Message + ")", e); }
    }

    /// <summary>Options and model config stored in a checkpoint folder.</summary>
    public static (GrpoOptions Options, ModelConfig Model, int Step) ReadState(string dir)
    {
        var path = Path.Combine(dir, StateFile);
        if (!File.Exists(path)) throw new WhaleArgumentException("resume", dir, $"must be a checkpoint folder holding {StateFile}");
        try
        {
            var s = JsonSerializer.Deserialize<State>(File.ReadAllText(path), Json) ?? throw new WhaleFormatException(path, "holds null");
            return (s.Options, s.Model, s.Step);
        }
        catch (JsonException e) { throw new WhaleFormatException(path, "not a GRPO checkpoint state (" + e.Message + ")", e); }
    }

    /// <summary>Restores step, weights and optimizer state into a trainer built with the stored options.</summary>
    public static void Restore(GrpoTrainer trainer, string dir)
    {
        var (_, _, step) = ReadState(dir);
        var stateText = File.ReadAllText(Path.Combine(dir, StateFile));
        using var doc = JsonDocument.Parse(stateText);
        LoadModel(trainer.Policy, Path.Combine(dir, PolicyFile));
        if (trainer.Reference is not null) LoadModel(trainer.Reference, Path.Combine(dir, ReferenceFile));
        var opt = Path.Combine(dir, OptimizerFile);
        if (File.Exists(opt)) trainer.Optimizer.Load(opt);
        trainer.Step = step;
        trainer.NumTokens = doc.RootElement.GetProperty("NumTokens").GetInt64();
    }

    // ---- the SFT warm start's checkpoint: weights (MoE biases included), AdamW state and the step --------------
    const string SftStateFile = "sft-state.json";

    /// <summary>Writes an SFT checkpoint into <paramref name="dir"/> (policy.bin, optimizer.safetensors, then sft-state.json,
    /// whose presence marks it complete). The SFT batches are keyed by (seed, step), so the step is the data position.</summary>
    public static void SaveSft(string dir, DeepSeekLM model, Training.AdamWOptimizer optimizer, int step)
    {
        Directory.CreateDirectory(dir);
        var state = Path.Combine(dir, SftStateFile);
        if (File.Exists(state)) File.Delete(state);                                     // incomplete until rewritten
        SaveModel(model, Path.Combine(dir, PolicyFile));
        optimizer.Save(Path.Combine(dir, OptimizerFile));
        AtomicFile.WriteAllText(state, JsonSerializer.Serialize(new { step }, Json));
    }

    /// <summary>The step of a complete SFT checkpoint in <paramref name="dir"/>, or null when there is none.</summary>
    public static int? SftStep(string dir)
    {
        var path = Path.Combine(dir, SftStateFile);
        if (!File.Exists(path)) return null;
        try { using var d = JsonDocument.Parse(File.ReadAllText(path)); return d.RootElement.GetProperty("step").GetInt32(); }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
        { throw new WhaleFormatException(path, "not an SFT checkpoint state (" + e.Message + ")", e); }
    }

    /// <summary>Loads an SFT checkpoint into <paramref name="model"/> and <paramref name="optimizer"/>; returns its step.</summary>
    public static int LoadSft(string dir, DeepSeekLM model, Training.AdamWOptimizer optimizer)
    {
        int step = SftStep(dir) ?? throw new WhaleArgumentException("resume", dir, $"must hold a complete SFT checkpoint ({SftStateFile})");
        LoadModel(model, Path.Combine(dir, PolicyFile));
        optimizer.Load(Path.Combine(dir, OptimizerFile));
        return step;
    }
}
