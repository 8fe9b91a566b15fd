// The KV cache of a whole model during generation: one per-layer cache object (whose layout depends on
// the attention kind: K/V for MHA/GQA/MQA and naive MLA, the latent + RoPE key for absorbed MLA),
// preallocated to a fixed capacity so its bytes are exactly what the KV accounting formulas say, plus
// which slots hold real tokens (prompts of different lengths are left-padded).
//
// Shapes: B batch, C capacity (slots), L = Length (slots filled so far).
using TorchSharp;
using static TorchSharp.torch;

namespace WhaleTech.Core;

/// <summary>A layer's cache: whatever that attention stores per token.</summary>
public interface ILayerCache : IDisposable
{
    /// <summary>Bytes held by this layer's cache tensors (all C slots).</summary>
    long Bytes { get; }
}

public sealed class InferenceCache : IDisposable
{
    public long Batch { get; }
    public long Capacity { get; }
    /// <summary>Slots already filled (the next token goes to slot Length).</summary>
    public long Length { get; private set; }
    /// <summary>[B, C] bool: slot holds a real token (false for left padding and unused slots).</summary>
    public Tensor KeyValid { get; }
    public ILayerCache[] Layers { get; }

    public InferenceCache(long batch, long capacity, Device device, Func<int, ILayerCache> makeLayer, int layers)
    {
        Batch = Runtime.Guard.Positive("batch", batch);
        Capacity = Runtime.Guard.Positive("capacity", capacity);
        KeyValid = torch.zeros(batch, capacity, dtype: ScalarType.Bool, device: device);
        Layers = Enumerable.Range(0, layers).Select(makeLayer).ToArray();
    }

    /// <summary>Bytes of all layers' K/V (or latent) tensors — what the KV accounting predicts.</summary>
    public long Bytes => Layers.Sum(l => l.Bytes);

    /// <summary>Checks that <paramref name="newTokens"/> more fit.</summary>
    public void EnsureRoom(long newTokens)
    {
        if (Length + newTokens > Capacity)
            throw new Runtime.WhaleArgumentException("tokens", Length + newTokens, $"must fit the KV cache capacity = {Capacity} (make the cache larger)");
    }

    /// <summary>Marks slots [Length, Length+T) as holding real tokens where <paramref name="valid"/> [B, T] is true.
    /// The model calls this before its layers run, then <see cref="Advance"/> after they wrote their caches.</summary>
    public void MarkNew(Tensor valid)
    {
        EnsureRoom(valid.shape[1]);
        KeyValid.narrow(1, Length, valid.shape[1]).copy_(valid);
    }

    /// <summary>Moves past the <paramref name="newTokens"/> slots just written.</summary>
    public void Advance(long newTokens) => Length += newTokens;

    /// <summary>Rolls the cache back to its first <paramref name="length"/> slots (speculative decoding drops the
    /// rejected draft tokens this way). Works for every layer kind (K/V, naive or absorbed MLA latent): slots
    /// ≥ Length are marked empty, and their stale layer tensors are never read, because every attention step
    /// first writes slots [Length, Length+T) and then reads only [0, Length+T).</summary>
    public void Truncate(long length)
    {
        if (length < 0 || length > Length)
            throw new Runtime.WhaleArgumentException("length", length, $"must be in [0, Length = {Length}] (a cache can only be rolled back)");
        KeyValid.narrow(1, length, Capacity - length).fill_(false);
        Length = length;
    }

    public void Dispose()
    {
        KeyValid.Dispose();
        foreach (var l in Layers) l.Dispose();
    }
}

/// <summary>What every attention layer gets besides its input: positions, mask, and the cache.</summary>
public sealed class AttentionContext
{
    /// <summary>[B, T] long: RoPE position of each new token.</summary>
    public required Tensor Positions { get; init; }
    /// <summary>[B, 1, T, S] fp32 additive mask (0 or −inf) over the S = start + T keys.</summary>
    public required Tensor Mask { get; init; }
    /// <summary>The model's cache, or null (training / full recomputation).</summary>
    public InferenceCache? Cache { get; init; }
    /// <summary>RoPE tables gathered at <see cref="Positions"/> once for the whole forward (optional: a layer whose
    /// rotary embedding did not make them gathers its own).</summary>
    public RotaryTables? Rotary { get; init; }
    /// <summary>Slot where the first new token goes (cache.Length, or 0 without a cache).</summary>
    public long Start => Cache?.Length ?? 0;

    /// <summary>Builds the additive mask: key j is visible to query t iff j ≤ start+t and slot j holds a real
    /// token — and always its own slot, so a padding query never has an all −inf row (no NaN).</summary>
    public static Tensor BuildMask(Tensor keyValid, long start, long newTokens)
    {
        using var scope = torch.NewDisposeScope();
        long s = start + newTokens;
        var device = keyValid.device;
        var q = torch.arange(start, s, device: device).unsqueeze(1);            // [T, 1]
        var k = torch.arange(s, device: device).unsqueeze(0);                   // [1, S]
        var causal = k.le(q);                                                  // [T, S]
        var self = k.eq(q);                                                    // [T, S]
        var allowed = causal.unsqueeze(0).logical_and(keyValid.narrow(1, 0, s).unsqueeze(1)).logical_or(self.unsqueeze(0)); // [B, T, S]
        var mask = torch.zeros(allowed.shape, dtype: ScalarType.Float32, device: device)
            .masked_fill(allowed.logical_not(), float.NegativeInfinity);       // [B, T, S]
        return mask.unsqueeze(1).MoveToOuterDisposeScope();                    // [B, 1, T, S]
    }
}
