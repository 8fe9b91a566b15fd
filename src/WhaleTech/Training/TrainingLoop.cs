// The sizes every training loop shares: optimizer steps, sequences per step, AdamW's peak learning rate,
// decoupled weight decay and the gradient-norm clip, validated once here. TrainOptions is a TrainingLoop plus
// the LM loop's schedule, evaluation and guard settings; the experiments hold one with their own initial
// values. The sequence length is not here: it belongs to the data (the LM token window, or the MQAR task's
// 2(N + Q)); neither is the schedule's warm-up, which each loop derives by its own rule.
// JSON: [JsonPropertyOrder] keeps a TrainOptions object's fields in their order before the split (checkpoint state.json).
using System.Text.Json.Serialization;

namespace WhaleTech.Training;

public record TrainingLoop
{
    [JsonPropertyOrder(1)] public int Steps { get; init; } = 300;
    [JsonPropertyOrder(2)] public int BatchSize { get; init; } = 16;
    /// <summary>Peak learning rate of AdamW.</summary>
    [JsonPropertyOrder(4)] public double LearningRate { get; init; } = 3e-3;
    /// <summary>Decoupled weight decay of AdamW (matrices only in LmTrainer).</summary>
    [JsonPropertyOrder(7)] public double WeightDecay { get; init; } = 0.01;
    /// <summary>Largest global gradient L2 norm; larger gradients are scaled down to it.</summary>
    [JsonPropertyOrder(8)] public double GradClip { get; init; } = 1.0;

    /// <summary>Checks the loop's own fields; names the first bad one.</summary>
    public TrainingLoop Validate()
    {
        Runtime.Guard.Positive("steps", Steps);
        Runtime.Guard.Positive("batch_size", BatchSize);
        Runtime.Guard.Positive("lr", LearningRate);
        Runtime.Guard.NonNegative("weight_decay", WeightDecay);
        Runtime.Guard.Positive("grad_clip", GradClip);
        return this;
    }
}
