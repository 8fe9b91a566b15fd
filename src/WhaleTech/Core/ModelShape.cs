// The shape of a small DeepSeek-style LM that the experiments, the MTP and FP8 runs and the GRPO policy share:
// hidden size, layers and heads, validated once here. The attention kind is not part of the shape (the MLA
// experiments sweep it over one shape), so a record that trains one kind names it next to its shape, and
// Tiny(attention, vocab) builds the ModelConfig. Each record that holds a shape gives it its own initial values;
// the defaults here are ModelConfig.Tiny's.
using System.Text.Json.Serialization;
using WhaleTech.Runtime;

namespace WhaleTech.Core;

public record ModelShape
{
    /// <summary>hidden_size (D).</summary>
    [JsonPropertyName("hidden")] public int Hidden { get; init; } = 64;
    /// <summary>num_hidden_layers.</summary>
    [JsonPropertyName("layers")] public int Layers { get; init; } = 2;
    /// <summary>num_attention_heads (H).</summary>
    [JsonPropertyName("heads")] public int Heads { get; init; } = 4;

    /// <summary>Checks the shape's own fields (positive sizes); names the first bad one.</summary>
    public ModelShape Validate()
    {
        Guard.Positive("hidden", Hidden);
        Guard.Positive("layers", Layers);
        Guard.Positive("heads", Heads);
        return this;
    }

    /// <summary>ModelConfig.Tiny of this shape with <paramref name="attention"/> over <paramref name="vocab"/> tokens.</summary>
    public ModelConfig Tiny(string attention, int vocab) => ModelConfig.Tiny(attention, vocab, Hidden, Layers, Heads);
}
