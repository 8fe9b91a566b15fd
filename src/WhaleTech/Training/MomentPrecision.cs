// Storage precision of AdamW's moment tensors m (first moment) and v (second moment).
// DeepSeek-V3 §3.3 "Low-Precision Optimizer States": the moments are tracked in BF16 instead of FP32 "without
// incurring observable performance degradation", while master weights (and gradients for accumulation) stay FP32.
//   fp32  4 + 4 = 8 bytes of optimizer state per parameter (what torch.optim.AdamW keeps)
//   bf16  2 + 2 = 4 bytes per parameter; the update itself is still computed in FP32 (AdamWOptimizer.cs)
// Names in options and on the command line: "fp32" / "bf16" (json `optimizer_moments`, CLI `--optimizer-moments`).
using System.Text.Json;
using System.Text.Json.Serialization;
using WhaleTech.Runtime;
using static TorchSharp.torch;

namespace WhaleTech.Training;

[JsonConverter(typeof(MomentPrecisionJsonConverter))]
public enum MomentPrecision { Fp32, Bf16 }

public static class MomentPrecisions
{
    /// <summary>"fp32" or "bf16".</summary>
    public static string Name(this MomentPrecision p) => p == MomentPrecision.Bf16 ? "bf16" : "fp32";

    /// <summary>Parses fp32 / bf16 (also float32 / bfloat16, any case); anything else names <paramref name="parameter"/>.</summary>
    public static MomentPrecision Parse(string parameter, string? value) => value?.Trim().ToLowerInvariant() switch
    {
        "fp32" or "float32" => MomentPrecision.Fp32,
        "bf16" or "bfloat16" => MomentPrecision.Bf16,
        _ => throw new WhaleArgumentException(parameter, value, "must be fp32 or bf16"),
    };

    /// <summary>Parses a comma-separated list such as "fp32,bf16" (duplicates dropped, order kept).</summary>
    public static MomentPrecision[] ParseList(string parameter, string? value)
    {
        var items = (value ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (items.Length == 0) throw new WhaleArgumentException(parameter, value, "must be fp32, bf16 or both separated by a comma");
        return items.Select(v => Parse(parameter, v)).Distinct().ToArray();
    }

    /// <summary>The dtype m and v are stored in.</summary>
    public static ScalarType DType(this MomentPrecision p) => p == MomentPrecision.Bf16 ? ScalarType.BFloat16 : ScalarType.Float32;

    /// <summary>Bytes of optimizer state per parameter element (m and v together): 8 in FP32, 4 in BF16.</summary>
    public static int StateBytesPerElement(this MomentPrecision p) => p == MomentPrecision.Bf16 ? 4 : 8;
}

/// <summary>Reads and writes MomentPrecision as "fp32" / "bf16" in every JSON file (options, checkpoints).</summary>
public sealed class MomentPrecisionJsonConverter : JsonConverter<MomentPrecision>
{
    public override MomentPrecision Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        if (reader.TokenType == JsonTokenType.Number && reader.TryGetInt32(out int n) && n is 0 or 1) return (MomentPrecision)n;
        if (reader.TokenType != JsonTokenType.String) throw new JsonException("optimizer_moments must be \"fp32\" or \"bf16\"");
        try { return MomentPrecisions.Parse("optimizer_moments", reader.GetString()); }
        catch (WhaleArgumentException e) { throw new JsonException(e.Message, e); }
    }

    public override void Write(Utf8JsonWriter writer, MomentPrecision value, JsonSerializerOptions options) => writer.WriteStringValue(value.Name());
}
