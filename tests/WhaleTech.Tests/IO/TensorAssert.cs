using static TorchSharp.torch;

namespace WhaleTech.Tests.IO;

static class TensorAssert
{
    /// <summary>Same dtype, same shape, every element equal (bitwise for the values used here).</summary>
    public static bool Same(Tensor a, Tensor b)
        => a.dtype == b.dtype && a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();
}
