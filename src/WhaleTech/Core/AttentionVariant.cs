// The attention registry: every attention a decoder block can use (MHA, GQA, MQA, MLA, or one you add) is an
// AttentionVariant registered under the name config.json's `whaletech_attention` holds. Config validation,
// the decoder blocks, the RoPE table, KV accounting and the decode benchmark all ask the variant, so a new
// attention is one file (the layer + its variant) and one registration line (Attention/BuiltInAttention.cs
// for the library's own; AttentionVariants.Register at start-up for yours). docs/architecture.md shows how.
using WhaleTech.Runtime;

namespace WhaleTech.Core;

/// <summary>One kind of attention: how to validate a config for it, build it, size its RoPE and its cache.</summary>
public abstract class AttentionVariant
{
    /// <summary>The registry key, lower case: the value of whaletech_attention ("mla", "gqa", …).</summary>
    public abstract string Name { get; }

    /// <summary>One line for help texts and tables.</summary>
    public abstract string Summary { get; }

    /// <summary>Checks the config fields this attention uses; throws <see cref="WhaleArgumentException"/> naming the first bad one.</summary>
    public abstract void Validate(ModelConfig cfg);

    /// <summary>Rotary dimension per head (the width RoPE rotates): the model builds one RoPE table of this size.</summary>
    public abstract int RopeDim(ModelConfig cfg);

    /// <summary>Elements this attention's inference cache holds per token per layer (its default decoding path).</summary>
    public abstract long KvElementsPerTokenPerLayer(ModelConfig cfg);

    /// <summary>Builds the layer; <paramref name="prefix"/> is its Hugging Face path ("model.layers.{i}.self_attn").</summary>
    public abstract AttentionLayer Create(ModelConfig cfg, RotaryEmbedding rope, LinearFactory linear, string prefix);

    public override string ToString() => Name;
}

public static class AttentionVariants
{
    /// <summary>Case-insensitive, trimmed lookups; a second registration replaces the first in place.</summary>
    static readonly NamedRegistry<AttentionVariant> Registry = new(StringComparer.OrdinalIgnoreCase, DuplicateName.ReplaceInPlace, key: n => n.Trim());

    /// <summary>Adds a variant (a second registration of a name replaces the first).</summary>
    public static AttentionVariant Register(AttentionVariant variant)
    {
        ArgumentNullException.ThrowIfNull(variant);
        if (string.IsNullOrWhiteSpace(variant.Name) || variant.Name != variant.Name.Trim().ToLowerInvariant())
            throw new WhaleArgumentException("variant.Name", variant.Name, "must be a non-empty lower-case name");
        return Registry.Register(variant.Name, variant);
    }

    /// <summary>Registered names in registration order.</summary>
    public static IReadOnlyList<string> Names => Registry.Names;

    /// <summary>The variant called <paramref name="name"/>; an unknown name is an error listing the registered ones.</summary>
    public static AttentionVariant Get(string name, string parameter = "whaletech_attention") => Registry.Get(name, parameter);

    public static bool Contains(string name) => Registry.Contains(name);
}
