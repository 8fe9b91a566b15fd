// The KV-cache numbers DeepSeek-V2 reports, recomputed from KvAccounting's formulas (Table 1):
//
//   Table 9 (Appendix D.2, "KV Cache per Token (# Element)", all layers):
//     small MoE  MHA 110.6K = 27 layers · 2 · 16 heads · 128      = 110,592  (V2-Lite's layers and heads)
//                MLA  15.6K = 27 layers · (512 + 64)              =  15,552  (V2-Lite's d_c, d_h^R)
//     large MoE  MHA 860.2K = 60 layers · 2 · 7,168 (n_h·d_h)     = 860,160  (n_h·d_h = 7,168, e.g. 56 heads of 128:
//                                                                              the paper does not list this model's heads)
//                MLA  34.6K = 60 layers · (512 + 64)              =  34,560  (V2's layers, d_c, d_h^R)
//   Headline (§1): "reduces the KV cache by 93.3%" against DeepSeek 67B (95 layers, GQA with 8 KV heads of 128):
//     67B  2 · 8 · 128 · 95 = 194,560 elements/token;  V2  576 · 60 = 34,560
//     architecture alone: 1 − 34,560/194,560 = 82.24%
//     with V2's KV quantization to ~6 bits per element (§3.2.3) against a 16-bit 67B cache:
//     1 − (34,560 · 6)/(194,560 · 16) = 93.34%
using WhaleTech.Model;
using WhaleTech.Core;

using WhaleTech.Attention;

namespace WhaleTech.Lab.Mla;

public static class DeepSeekV2KvPaper
{
    /// <summary>One Table 9 cell: our recomputation and the number the paper prints (in thousands of elements).</summary>
    public sealed record Table9Cell(string Model, string Attention, string How, long Elements, double PaperThousands);

    /// <summary>The small MoE of Table 9 has V2-Lite's attention: 27 layers, 16 heads, d_h 128, d_c 512, d_h^R 64.</summary>
    public static KvShape SmallMoe => KvShape.From(ModelPresets.DeepSeekV2Lite);

    /// <summary>The large MoE of Table 9: V2's 60 layers and MLA dims; its MHA twin has n_h·d_h = 7,168 (56 heads × 128).</summary>
    public static KvShape LargeMoeMla => KvShape.From(ModelPresets.DeepSeekV2);
    public static KvShape LargeMoeMha => KvShape.From(ModelPresets.DeepSeekV2) with { Heads = 56 };

    public static IReadOnlyList<Table9Cell> Table9() =>
    [
        new("small MoE", "MHA", "27 · 2 · 16 · 128", KvAccounting.ElementsPerToken(SmallMoe, KvLayout.Mha), 110.6),
        new("small MoE", "MLA", "27 · (512 + 64)", KvAccounting.ElementsPerToken(SmallMoe, KvLayout.MlaLatent), 15.6),
        new("large MoE", "MHA", "60 · 2 · 56 · 128", KvAccounting.ElementsPerToken(LargeMoeMha, KvLayout.Mha), 860.2),
        new("large MoE", "MLA", "60 · (512 + 64)", KvAccounting.ElementsPerToken(LargeMoeMla, KvLayout.MlaLatent), 34.6),
    ];

    /// <summary>KV elements per token of DeepSeek 67B (GQA-8) and DeepSeek-V2 (MLA latent).</summary>
    public static (long Dense67B, long V2) HeadlineElements() =>
        (KvAccounting.ElementsPerToken(KvShape.From(ModelPresets.DeepSeek67B), KvLayout.Gqa),
         KvAccounting.ElementsPerToken(KvShape.From(ModelPresets.DeepSeekV2), KvLayout.MlaLatent));

    /// <summary>Fraction of the 67B's KV bytes that V2 saves when the 67B stores 16-bit elements and V2
    /// stores <paramref name="v2BitsPerElement"/> bits (16: architecture only ≈ 0.822; 6: ≈ 0.933).</summary>
    public static double HeadlineReduction(double v2BitsPerElement = 16)
    {
        var (dense, v2) = HeadlineElements();
        return 1 - v2 * v2BitsPerElement / (dense * 16.0);
    }
}
