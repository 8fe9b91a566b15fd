// The custom autograd function behind Fp8Linear: y = x·Wᵀ + b with each of the three GEMMs computed on
// operands rounded per an Fp8Recipe (DeepSeek-V3 §3.3, Figure 6).
//
//   Fprop  y  = Q_x(x) · Q_W(W)ᵀ + b                     Q_x: tiles along K;  Q_W: blocks of [M, K]
//   Dgrad  dx = Q_g(dy) · Q_W(W)                         Q_g: tiles along M; W's blocks reused (a t×t block
//                                                        grid is the same for Wᵀ, so no requantization)
//   Wgrad  dW = Q_g(dyᵀ) · Q_x(Q_x(x)ᵀ)ᵀ                 both operands requantized in tiles along N (tokens):
//                                                        x is cached in FP8 after Fprop, then dequantized,
//                                                        transposed and requantized (not just transposed:
//                                                        1×t tiles along K would be t×1 tiles along N)
//   db = Σ_n dy (float32)
//
// Gradient semantics: the quantizers are straight-through (their derivative is taken as the identity),
// and the backward GEMMs themselves run on quantized operands as above. So dx and dW are the exact
// gradients of the simulated FP8 computation with respect to the dequantized operands, not of the
// float32 function; with the Fp32 recipe they equal nn.Linear's gradients (tested).
//
// Real FP8 (recipe.RealGemm): the same three GEMMs on 1-byte float8 operands with torch._scaled_mm — per-tensor
// scales through Fp8ScaledMatmul (`hybrid-tensor-real`), DeepSeek-V3's tiles and blocks through Fp8BlockScaledMatmul
// (`deepseek-v3-real`, same codes and scales as the simulation; Wgrad requantizes the cached x as above).
//
// Shapes: x [N, K] (N tokens), W [M, K], b [M], y [N, M], dy [N, M], dx [N, K], dW [M, K].
using TorchSharp;
using static TorchSharp.torch;

namespace WhaleTech.Fp8;

public sealed class Fp8LinearFunction : autograd.SingleTensorFunction<Fp8LinearFunction>
{
    public override string Name => "Fp8LinearFunction";

    /// <summary>y = x·Wᵀ + b on operands rounded per <paramref name="recipe"/>; bias may be null. A recipe whose scaling
    /// policy keeps state (delayed) needs the layer's <paramref name="scalers"/> (Fp8Linear holds them).</summary>
    public static Tensor Apply(Tensor x, Tensor weight, Tensor? bias, Fp8Recipe recipe, Fp8LinearScalers? scalers = null)
        => apply(x, weight, bias!, recipe, scalers!);

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var x = (Tensor)vars[0];                                           // [N, K]
        var w = (Tensor)vars[1];                                           // [M, K]
        var b = vars[2] as Tensor;                                         // [M] or null
        var recipe = (Fp8Recipe)vars[3];
        var scalers = vars.Length > 4 ? vars[4] as Fp8LinearScalers : null;
        if (recipe.RealGemm) return ForwardReal(ctx, x, w, b, recipe);
        var xq = scalers is null ? Round(x, recipe.Activation, recipe.Scaling) : scalers.Round(scalers.X, x, recipe.Activation, recipe.Scaling);   // [N, K], FP8-cached
        var wq = scalers is null ? Round(w, recipe.Weight, recipe.Scaling) : scalers.Round(scalers.W, w, recipe.Weight, recipe.Scaling);          // [M, K]
        var y = xq.matmul(wq.t());                                         // [N, M]
        if (b is not null && !b.IsInvalid) y = y + b;
        ctx.save_for_backward([xq, wq]);
        ctx.save_data("recipe", recipe);
        ctx.save_data("scalers", scalers!);
        ctx.save_data("hasBias", b is not null && !b.IsInvalid);
        return recipe.OutputBf16 ? ToBf16(y) : y;
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor dy)   // dy [N, M]
    {
        var saved = ctx.get_saved_variables();
        var recipe = (Fp8Recipe)ctx.get_data("recipe");
        if (recipe.RealGemm) return BackwardReal(ctx, saved, dy, recipe);
        Tensor xq = saved[0], wq = saved[1];
        bool hasBias = (bool)ctx.get_data("hasBias");
        var g = recipe.Gradient;
        if (ctx.get_data("scalers") is Fp8LinearScalers scalers)
        {
            // A stateful (delayed, per-tensor) policy: one scale per tensor, so dyᵀ's codes are dy's transposed and the
            // cached x is already on its FP8 grid — quantize dy once and record its amax once per step.
            var dyqs = scalers.Round(scalers.Dy, dy, g, recipe.Scaling);                            // [N, M]
            var dxs = dyqs.matmul(wq);                                                               // [N, K]   Dgrad
            var dws = dyqs.t().matmul(xq);                                                           // [M, K]   Wgrad
            return [recipe.OutputBf16 ? ToBf16(dxs) : dxs, dws, hasBias ? dy.sum(0L) : null!, null!, null!];
        }
        var dyq = Round(dy, g, recipe.Scaling);                             // [N, M] tiles along M
        var dx = dyq.matmul(wq);                                            // [N, K]   Dgrad
        var dyTq = Round(dy.t(), g, recipe.Scaling);                        // [M, N] tiles along N
        var xTq = Round(xq.t(), recipe.Activation, recipe.Scaling);         // [K, N] requantized along N
        var dw = dyTq.matmul(xTq.t());                                      // [M, K]   Wgrad
        var db = hasBias ? dy.sum(0L) : null;                                // [M]
        return [recipe.OutputBf16 ? ToBf16(dx) : dx, dw, db!, null!, null!];
    }

    // ---- real FP8 GEMMs (torch._scaled_mm on float8 storage) ------------------------------------------------
    // Per-tensor recipes go through Fp8ScaledMatmul (one _scaled_mm per GEMM); DeepSeek-V3's layout through
    // Fp8BlockScaledMatmul (one _scaled_mm per 128-wide K block, scales applied at promotion). Either way x and W
    // are cached for backward in FP8, 1 byte per element plus their scales.

    static Tensor ForwardReal(autograd.AutogradContext ctx, Tensor x, Tensor w, Tensor? b, Fp8Recipe recipe)
    {
        Tensor y;
        if (IsBlockScaledReal(recipe))
        {
            var (xq, wq) = QuantizeForFprop(x, w, recipe);                                              // [N, K] tiles, [M, K] blocks
            using (xq) using (wq)
            {
                y = Fp8BlockScaledMatmul.Apply(xq, wq);                                                   // [N, M] Fprop
                ctx.save_for_backward([xq.Data.alias(), xq.Scales.alias(), wq.Data.alias(), wq.Scales.alias()]);  // x and W kept in FP8
            }
        }
        else
        {
            using var xq = Fp8ScaledMatmul.Quantize(x, recipe.Activation.Format, recipe.Scaling);   // [N, K] 1 byte
            using var wq = Fp8ScaledMatmul.Quantize(w, recipe.Weight.Format, recipe.Scaling);       // [M, K] 1 byte
            y = Fp8ScaledMatmul.Apply(xq.Data, wq.Data.t(), xq.Scale, wq.Scale);                              // [N, M] Fprop
            ctx.save_for_backward([xq.Data.alias(), xq.Scale.alias(), wq.Data.alias(), wq.Scale.alias()]);  // x and W kept in FP8
        }
        bool hasBias = b is not null && !b.IsInvalid;
        if (hasBias) y = y + b!;
        ctx.save_data("recipe", recipe);
        ctx.save_data("hasBias", hasBias);
        return recipe.OutputBf16 ? ToBf16(y) : y;
    }

    static List<Tensor> BackwardReal(autograd.AutogradContext ctx, List<Tensor> saved, Tensor dy, Fp8Recipe recipe)
    {
        bool hasBias = (bool)ctx.get_data("hasBias");
        var (dx, dw) = IsBlockScaledReal(recipe) ? BlockScaledBackward(saved, dy, recipe) : PerTensorBackward(saved, dy, recipe);
        var db = hasBias ? dy.sum(0L) : null;                                                           // [M]
        return [recipe.OutputBf16 ? ToBf16(dx) : dx, dw, db!, null!, null!];
    }

    static (Tensor Dx, Tensor Dw) PerTensorBackward(List<Tensor> saved, Tensor dy, Fp8Recipe recipe)
    {
        Tensor x8 = saved[0], sx = saved[1], w8 = saved[2], sw = saved[3];
        using var dyq = Fp8ScaledMatmul.Quantize(dy, recipe.Gradient.Format, recipe.Scaling); // [N, M]
        var dx = Fp8ScaledMatmul.Apply(dyq.Data, w8, dyq.Scale, sw);                                    // [N, K] Dgrad: dy · W
        var dw = Fp8ScaledMatmul.Apply(dyq.Data.t().contiguous(), x8, dyq.Scale, sx);                   // [M, K] Wgrad: dyᵀ · x
        return (dx, dw);
    }

    static (Tensor Dx, Tensor Dw) BlockScaledBackward(List<Tensor> saved, Tensor dy, Fp8Recipe recipe)
    {
        using var scope = NewDisposeScope();                                                                   // frees the dequantized x and the views
        int t = recipe.Scaling.TileSize;
        var xq = new Fp8BlockStored(saved[0], saved[1], recipe.Activation.Format, Fp8Granularity.Tile, t);   // [N, K] cached x
        var wq = new Fp8BlockStored(saved[2], saved[3], recipe.Weight.Format, Fp8Granularity.Block, t);      // [M, K] cached W
        var g = recipe.Gradient;
        using var dyq = Fp8BlockScaledMatmul.Quantize(dy, g.Format, Fp8Granularity.Tile, recipe.Scaling);       // [N, M] tiles along M
        var dx = Fp8BlockScaledMatmul.Apply(dyq, wq.Transposed());                                              // [N, K] Dgrad: dy · W
        using var dyT = Fp8BlockScaledMatmul.Quantize(dy.t(), g.Format, Fp8Granularity.Tile, recipe.Scaling);   // [M, N] tiles along N
        using var xT = Fp8BlockScaledMatmul.Quantize(xq.Dequantize().t(), recipe.Activation.Format, Fp8Granularity.Tile, recipe.Scaling); // [K, N] requantized along N
        var dw = Fp8BlockScaledMatmul.Apply(dyT, xT);                                                          // [M, K] Wgrad: dyᵀ · x
        return (dx.MoveToOuterDisposeScope(), dw.MoveToOuterDisposeScope());
    }

    /// <summary>What the block-scaled real path caches for backward: x [N, K] in 1×t tiles and W [M, K] in t×t blocks,
    /// real float8 (1 byte per element) plus float32 scales.</summary>
    internal static (Fp8BlockStored X, Fp8BlockStored W) QuantizeForFprop(Tensor x, Tensor w, Fp8Recipe recipe)
        => (Fp8BlockScaledMatmul.Quantize(x, recipe.Activation.Format, Fp8Granularity.Tile, recipe.Scaling),
            Fp8BlockScaledMatmul.Quantize(w, recipe.Weight.Format, Fp8Granularity.Block, recipe.Scaling));

    /// <summary>True for DeepSeek-V3's layout (x and dy in 1×t tiles, W in t×t blocks), false for per-tensor scales;
    /// anything else cannot run on real FP8 and is a WhaleArgumentException.</summary>
    static bool IsBlockScaledReal(Fp8Recipe r)
    {
        bool Fp8(OperandRecipe op, Fp8Granularity g) => op.Precision == OperandPrecision.Fp8 && op.Granularity == g;
        if (Fp8(r.Activation, Fp8Granularity.PerTensor) && Fp8(r.Weight, Fp8Granularity.PerTensor) && Fp8(r.Gradient, Fp8Granularity.PerTensor))
            return false;
        if (Fp8(r.Activation, Fp8Granularity.Tile) && Fp8(r.Weight, Fp8Granularity.Block) && Fp8(r.Gradient, Fp8Granularity.Tile))
            return true;
        throw new Runtime.WhaleArgumentException($"{r.Name} operands", $"x: {r.Activation}, W: {r.Weight}, dy: {r.Gradient}",
            "must all be FP8, either all with per-tensor scales or x and dy in 1×t tiles and W in t×t blocks (DeepSeek-V3), when RealGemm is on (torch._scaled_mm)");
    }

    /// <summary>An operand as the GEMM sees it: float32 values of its FP8 / BF16 rounding.</summary>
    public static Tensor Round(Tensor t, OperandRecipe operand, Fp8Scaling scaling) => operand.Precision switch
    {
        OperandPrecision.Fp32 => t.contiguous(),
        OperandPrecision.Bf16 => ToBf16(t),
        _ => Fp8Quantizer.FakeQuantize(t.contiguous(), operand.Format, operand.Granularity, scaling),
    };

    static Tensor ToBf16(Tensor t) => t.to_type(ScalarType.BFloat16).to_type(ScalarType.Float32);
}

/// <summary>The scaling state of one FP8 linear's three operands, for a stateful scaling policy (delayed).</summary>
public sealed class Fp8LinearScalers(Fp8ScalingPolicy policy)
{
    public Fp8ScalingPolicy Policy { get; } = policy;
    public Fp8OperandScaler X { get; } = policy.CreateScaler();
    public Fp8OperandScaler W { get; } = policy.CreateScaler();
    public Fp8OperandScaler Dy { get; } = policy.CreateScaler();

    /// <summary>The operand as the GEMM sees it: FP8 operands through their scaler, BF16/FP32 ones as Fp8LinearFunction.Round.</summary>
    public Tensor Round(Fp8OperandScaler scaler, Tensor t, OperandRecipe operand, Fp8Scaling scaling)
        => operand.Precision == OperandPrecision.Fp8 ? scaler.FakeQuantize(t, operand, scaling) : Fp8LinearFunction.Round(t, operand, scaling);
}
