// Training checkpoints: everything needed to continue a run bit-exactly — weights (config.json +
// model.safetensors, HF layout; MoE biases are buffers and travel with them), AdamW state (optimizer.safetensors:
// per-parameter step, m and v in the run's moment precision), the step,
// the schedule, and the data stream's position. Written into a fresh temporary folder that replaces
// the previous checkpoint only once complete (IO/AtomicFolder), so a crash or kill mid-write leaves the previous
// checkpoint intact. A checkpoint is never written from a non-finite state.
using System.Text.Json;
using TorchSharp;
using WhaleTech.IO;
using WhaleTech.Model;
using static TorchSharp.torch;

namespace WhaleTech.Training;

public sealed record TrainerState(int Step, int DataSeed, long BatchesDrawn, TrainOptions Options);

public static class TrainingCheckpoint
{
    const string StateFile = "trainer.json", OptimizerFile = "optimizer.safetensors";

    /// <summary>For tests: called between files, so a "kill" can be simulated mid-write.</summary>
    internal static Action<string>? AfterFileWritten { get; set; }

    public static void Save(string folder, DeepSeekLM model, LmTrainer trainer, TokenWindowStream stream)
    {
        foreach (var (name, p) in model.named_parameters())
            if (!torch.isfinite(p).all().item<bool>())
                throw new Runtime.WhaleException($"refusing to write a checkpoint: parameter {name} holds NaN or Inf (the previous checkpoint is kept)");
        AtomicFolder.Replace(folder, tmp =>
        {
            StateDict.SavePretrained(model, model.Config.ToJson(), tmp);
            AfterFileWritten?.Invoke("model");
            trainer.Optimizer.Save(Path.Combine(tmp, OptimizerFile));
            AfterFileWritten?.Invoke("optimizer");
            var state = new TrainerState(trainer.Step, stream.Seed, stream.BatchesDrawn, trainer.Options);
            AtomicFile.WriteAllText(Path.Combine(tmp, StateFile), JsonSerializer.Serialize(state, new JsonSerializerOptions { WriteIndented = true }));
        });
    }

    /// <summary>Loads weights, optimizer state and step into <paramref name="model"/> / <paramref name="trainer"/>
    /// and moves <paramref name="stream"/> to where the run stopped.</summary>
    public static TrainerState Load(string folder, DeepSeekLM model, LmTrainer trainer, TokenWindowStream stream)
    {
        var (full, state) = ReadStateAt(folder);
        StateDict.Load(model, full);
        trainer.Optimizer.Load(Path.Combine(full, OptimizerFile));
        trainer.RestoreStep(state.Step);
        if (stream.Seed != state.DataSeed) throw new Runtime.WhaleArgumentException("data seed", stream.Seed, $"must equal the checkpoint's {state.DataSeed} to resume the same data stream");
        stream.Skip(state.BatchesDrawn - stream.BatchesDrawn);
        return state;
    }

    /// <summary>The stored step, data position and options of a checkpoint, without loading weights.</summary>
    public static TrainerState ReadState(string folder) => ReadStateAt(folder).State;

    static (string Folder, TrainerState State) ReadStateAt(string folder)
    {
        var full = AtomicFolder.Existing(folder) ?? Path.GetFullPath(folder);   // or its ".old" twin: killed between the two renames
        var statePath = Path.Combine(full, StateFile);
        if (!File.Exists(statePath)) throw new Runtime.WhaleArgumentException("checkpoint", folder, "must be a folder written by TrainingCheckpoint.Save (trainer.json missing)");
        try { return (full, JsonSerializer.Deserialize<TrainerState>(File.ReadAllText(statePath)) ?? throw new JsonException("null")); }
        catch (JsonException e) { throw new Runtime.WhaleFormatException(statePath, "not a valid trainer state: " + e.Message, e); }
    }
}
