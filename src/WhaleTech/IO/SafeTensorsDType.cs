// The element types of the safetensors format (https://huggingface.co/docs/safetensors) and how each
// maps to a TorchSharp ScalarType. TorchSharp 0.107 has no names for the float8 types, but libtorch's
// Float8_e5m2 = 23 and Float8_e4m3fn = 24 work on CPU: tensors of those types can be created from raw
// bytes and converted to float32 with to_type(Float32).
//
// The order of the enum is the Hugging Face writer's "alignment order" (BOOL < U8 < ... < U64); the
// writer sorts tensors by this order descending, then by name, exactly as the reference writer does, so
// that files written here and by Hugging Face are byte-identical for the same tensors.
using WhaleTech.Runtime;
using static TorchSharp.torch;

namespace WhaleTech.IO;

/// <summary>A safetensors element type. Declared in the reference writer's alignment order.</summary>
public enum SafeTensorsDType
{
    BOOL, U8, I8, F8_E5M2, F8_E4M3, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64,
}

public static class SafeTensorsDTypes
{
    /// <summary>libtorch's Float8_e5m2 (no TorchSharp 0.107 name).</summary>
    public const ScalarType Float8E5M2 = (ScalarType)23;
    /// <summary>libtorch's Float8_e4m3fn (no TorchSharp 0.107 name); safetensors calls it F8_E4M3.</summary>
    public const ScalarType Float8E4M3 = (ScalarType)24;

    /// <summary>Bytes per element.</summary>
    public static int Size(this SafeTensorsDType t) => t switch
    {
        SafeTensorsDType.BOOL or SafeTensorsDType.U8 or SafeTensorsDType.I8
            or SafeTensorsDType.F8_E5M2 or SafeTensorsDType.F8_E4M3 => 1,
        SafeTensorsDType.I16 or SafeTensorsDType.U16 or SafeTensorsDType.F16 or SafeTensorsDType.BF16 => 2,
        SafeTensorsDType.I32 or SafeTensorsDType.U32 or SafeTensorsDType.F32 => 4,
        _ => 8,
    };

    /// <summary>The name written in the JSON header ("F32", "BF16", "F8_E4M3" ...).</summary>
    public static string Name(this SafeTensorsDType t) => t.ToString();

    /// <summary>Parses a header dtype name; null when it is not a safetensors dtype.</summary>
    public static SafeTensorsDType? TryParse(string? name)
        => name is not null && Enum.TryParse<SafeTensorsDType>(name, ignoreCase: false, out var t)
           && Enum.IsDefined(t) && t.ToString() == name ? t : null;

    /// <summary>True for the floating-point types (F8, F16, BF16, F32, F64).</summary>
    public static bool IsFloatingPoint(this SafeTensorsDType t) => t is SafeTensorsDType.F8_E5M2 or SafeTensorsDType.F8_E4M3
        or SafeTensorsDType.F16 or SafeTensorsDType.BF16 or SafeTensorsDType.F32 or SafeTensorsDType.F64;

    /// <summary>The TorchSharp type of a safetensors dtype; null for U16/U32/U64, which libtorch 2.x on
    /// TorchSharp 0.107 cannot hold (such tensors can still be read as raw bytes).</summary>
    public static ScalarType? ToScalarType(this SafeTensorsDType t) => t switch
    {
        SafeTensorsDType.BOOL => ScalarType.Bool,
        SafeTensorsDType.U8 => ScalarType.Byte,
        SafeTensorsDType.I8 => ScalarType.Int8,
        SafeTensorsDType.I16 => ScalarType.Int16,
        SafeTensorsDType.I32 => ScalarType.Int32,
        SafeTensorsDType.I64 => ScalarType.Int64,
        SafeTensorsDType.F16 => ScalarType.Float16,
        SafeTensorsDType.BF16 => ScalarType.BFloat16,
        SafeTensorsDType.F32 => ScalarType.Float32,
        SafeTensorsDType.F64 => ScalarType.Float64,
        SafeTensorsDType.F8_E5M2 => Float8E5M2,
        SafeTensorsDType.F8_E4M3 => Float8E4M3,
        _ => null,
    };

    /// <summary>The safetensors dtype of a TorchSharp type; throws for types safetensors cannot hold.</summary>
    public static SafeTensorsDType FromScalarType(ScalarType t, string parameter = "dtype") => t switch
    {
        ScalarType.Bool => SafeTensorsDType.BOOL,
        ScalarType.Byte => SafeTensorsDType.U8,
        ScalarType.Int8 => SafeTensorsDType.I8,
        ScalarType.Int16 => SafeTensorsDType.I16,
        ScalarType.Int32 => SafeTensorsDType.I32,
        ScalarType.Int64 => SafeTensorsDType.I64,
        ScalarType.Float16 => SafeTensorsDType.F16,
        ScalarType.BFloat16 => SafeTensorsDType.BF16,
        ScalarType.Float32 => SafeTensorsDType.F32,
        ScalarType.Float64 => SafeTensorsDType.F64,
        Float8E5M2 => SafeTensorsDType.F8_E5M2,
        Float8E4M3 => SafeTensorsDType.F8_E4M3,
        _ => throw new WhaleArgumentException(parameter, t.ToString(),
            "safetensors holds Bool, Byte, Int8/16/32/64, Float16, BFloat16, Float32, Float64, Float8_e4m3fn and Float8_e5m2"),
    };
}
