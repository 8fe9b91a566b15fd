// The contract every attention of the model meets, so MHA, GQA, MQA and MLA share one code path for
// everything else (issue: "one code path for everything but attention").
using TorchSharp;
using static TorchSharp.torch;

namespace WhaleTech.Core;

public abstract class AttentionLayer : nn.Module<Tensor, AttentionContext, Tensor>
{
    protected AttentionLayer(string name) : base(name) { }

    /// <summary>Index of this layer in the model; its cache is <c>cache.Layers[LayerIndex]</c>.</summary>
    public int LayerIndex { get; set; }

    /// <summary>Allocates this layer's cache for <paramref name="batch"/> sequences of up to <paramref name="capacity"/> tokens.</summary>
    public abstract ILayerCache CreateCache(long batch, long capacity, ScalarType dtype, Device device);
}
