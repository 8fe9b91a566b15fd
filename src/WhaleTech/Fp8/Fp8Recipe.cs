// Recipes: which number format and which scale granularity each operand of a linear layer's three GEMMs
// gets (DeepSeek-V3 §3.3, Figure 6/7):
//   Fprop  y  = x  · Wᵀ      operands x (activation) and W (weight)
//   Dgrad  dx = dy · W       operands dy (output gradient) and W
//   Wgrad  dW = dyᵀ · x      operands dyᵀ and xᵀ (contracting over tokens)
//
//   DeepSeek-V3    E4M3 for everything; x and dy in 1×128 tiles along the contracting dim, W in 128×128
//                  blocks (valid for W and Wᵀ alike); for Wgrad, the FP8-cached x and dy are
//                  dequantized, transposed and requantized into 1×128 tiles along the token dim.
//                  `deepseek-v3-real` runs the same numbers on real float8 (Fp8BlockScaledMatmul).
//   HybridTensor   per-tensor scales, E4M3 for x and W, E5M2 for gradients (Transformer Engine "hybrid").
//   Bf16           all operands rounded to bfloat16 (the baseline DeepSeek compares against).
//   Fp32           no rounding at all: the exact reference the tests compare with.
// In every recipe the GEMM itself accumulates in float32 (see Fp8Accumulator for the tensor-core model),
// master weights, bias and weight gradients stay float32, and the output / input gradient are rounded to
// bfloat16 when OutputBf16 is set (DeepSeek keeps activations between layers in BF16).
using WhaleTech.Runtime;

namespace WhaleTech.Fp8;

/// <summary>The number representation of one GEMM operand.</summary>
public enum OperandPrecision { Fp32, Bf16, Fp8 }

/// <summary>How one GEMM operand is rounded: precision, FP8 format and scale granularity.</summary>
public sealed record OperandRecipe(OperandPrecision Precision, Fp8Format Format, Fp8Granularity Granularity)
{
    public static readonly OperandRecipe Fp32 = new(OperandPrecision.Fp32, Fp8Format.E4M3, Fp8Granularity.PerTensor);
    public static readonly OperandRecipe Bf16 = new(OperandPrecision.Bf16, Fp8Format.E4M3, Fp8Granularity.PerTensor);
    public static OperandRecipe Fp8(Fp8Format f, Fp8Granularity g) => new(OperandPrecision.Fp8, f, g);

    public override string ToString() => Precision == OperandPrecision.Fp8 ? $"{Format} {Fp8Granularities.Name(Granularity)}" : Precision.ToString().ToLowerInvariant();
}

/// <param name="Name">Short name used on the command line and in results.</param>
/// <param name="Activation">x in Fprop and xᵀ in Wgrad (tiles run along the contracting dim).</param>
/// <param name="Weight">W in Fprop and Dgrad.</param>
/// <param name="Gradient">dy in Dgrad and dyᵀ in Wgrad.</param>
/// <param name="Scaling">Tile size, amax floor, power-of-two scales.</param>
/// <param name="OutputBf16">Round y and dx to bfloat16.</param>
/// <param name="RealGemm">Run the three GEMMs on real 1-byte float8 tensors with torch._scaled_mm instead of simulating
/// them in float32: per-tensor FP8 operands through Fp8ScaledMatmul, or DeepSeek-V3's layout (x and dy in 1×t tiles,
/// W in t×t blocks) through Fp8BlockScaledMatmul (one _scaled_mm per K block, scales applied at promotion).</param>
public sealed record Fp8Recipe(string Name, OperandRecipe Activation, OperandRecipe Weight, OperandRecipe Gradient, Fp8Scaling Scaling, bool OutputBf16 = true, bool RealGemm = false)
{
    /// <summary>How each FP8 operand's scale is found (Fp8ScalingPolicies): "current" (this tensor's amax, DeepSeek-V3)
    /// or "delayed" (the operand's amax history, Transformer Engine; per-tensor only).</summary>
    public string ScalingPolicy { get; init; } = "current";

    /// <summary>The policy ScalingPolicy names, checked against the operands it must scale.</summary>
    public Fp8ScalingPolicy Policy()
    {
        var policy = Fp8ScalingPolicies.Get(ScalingPolicy);
        policy.Validate("activation", Activation);
        policy.Validate("weight", Weight);
        policy.Validate("gradient", Gradient);
        if (RealGemm && !policy.Stateless)
            throw new WhaleArgumentException("scaling_policy", ScalingPolicy, "must be current with real FP8 GEMMs (RealGemm)");
        return policy;
    }

    public static readonly Fp8Recipe DeepSeekV3 = new("deepseek-v3",
        OperandRecipe.Fp8(Fp8Format.E4M3, Fp8Granularity.Tile),
        OperandRecipe.Fp8(Fp8Format.E4M3, Fp8Granularity.Block),
        OperandRecipe.Fp8(Fp8Format.E4M3, Fp8Granularity.Tile),
        Fp8Scaling.Default);

    /// <summary>DeepSeekV3 with real FP8 GEMMs (Fp8BlockScaledMatmul): the same codes and scales as the simulated recipe,
    /// multiplied in 1-byte storage K block by K block, equal to it up to float32 summation order.</summary>
    public static readonly Fp8Recipe DeepSeekV3Real = DeepSeekV3 with { Name = "deepseek-v3-real", RealGemm = true };

    public static readonly Fp8Recipe HybridPerTensor = new("hybrid-tensor",
        OperandRecipe.Fp8(Fp8Format.E4M3, Fp8Granularity.PerTensor),
        OperandRecipe.Fp8(Fp8Format.E4M3, Fp8Granularity.PerTensor),
        OperandRecipe.Fp8(Fp8Format.E5M2, Fp8Granularity.PerTensor),
        Fp8Scaling.Default);

    /// <summary>HybridPerTensor with real FP8 GEMMs (torch._scaled_mm): the same numbers as the simulated recipe up
    /// to float32 summation order, in 1-byte storage, and on Hopper on the FP8 tensor cores.</summary>
    public static readonly Fp8Recipe HybridPerTensorReal = HybridPerTensor with { Name = "hybrid-tensor-real", RealGemm = true };

    /// <summary>HybridPerTensor with Transformer Engine's delayed scaling: each operand's scale from its last 16 amax values.</summary>
    public static readonly Fp8Recipe HybridPerTensorDelayed = HybridPerTensor with { Name = "hybrid-tensor-delayed", ScalingPolicy = "delayed" };

    public static readonly Fp8Recipe Bf16 = new("bf16", OperandRecipe.Bf16, OperandRecipe.Bf16, OperandRecipe.Bf16, Fp8Scaling.Default);

    public static readonly Fp8Recipe Fp32 = new("fp32", OperandRecipe.Fp32, OperandRecipe.Fp32, OperandRecipe.Fp32, Fp8Scaling.Default, OutputBf16: false);

    /// <summary>A failure case: E4M3 gradients without any scaling (amax floor forced to 448 → scale 1),
    /// so small gradients underflow to zero.</summary>
    public static readonly Fp8Recipe UnscaledE4M3 = new("unscaled-e4m3",
        OperandRecipe.Fp8(Fp8Format.E4M3, Fp8Granularity.PerTensor),
        OperandRecipe.Fp8(Fp8Format.E4M3, Fp8Granularity.PerTensor),
        OperandRecipe.Fp8(Fp8Format.E4M3, Fp8Granularity.PerTensor),
        Fp8Scaling.Default with { UnitScale = true });

    /// <summary>Case-insensitive, trimmed names; a recipe of a registered name replaces it in place.</summary>
    static readonly NamedRegistry<Fp8Recipe> Registry = new(StringComparer.OrdinalIgnoreCase, DuplicateName.ReplaceInPlace, key: n => n.Trim(),
        initial: new[] { DeepSeekV3, DeepSeekV3Real, HybridPerTensor, HybridPerTensorReal, HybridPerTensorDelayed, Bf16, Fp32, UnscaledE4M3 }.Select(r => (r.Name, r)));

    /// <summary>Every registered recipe, the built-in ones first.</summary>
    public static IReadOnlyList<Fp8Recipe> All => Registry.Items;

    /// <summary>Adds a recipe (a new FP8 recipe is one record plus this call); one of the same name is replaced.</summary>
    public static Fp8Recipe Register(Fp8Recipe recipe)
    {
        ArgumentNullException.ThrowIfNull(recipe);
        return Registry.Register(recipe.Name, recipe);
    }

    public static Fp8Recipe Parse(string parameter, string name)
        => Registry.TryGet(name, out var recipe) ? recipe
           : throw new WhaleArgumentException(parameter, name, "must be one of " + string.Join(", ", All.Select(r => r.Name)));

    public override string ToString() => $"{Name} (x: {Activation}, W: {Weight}, dy: {Gradient}" + (ScalingPolicy == "current" ? ")" : $", {ScalingPolicy} scaling)");
}
