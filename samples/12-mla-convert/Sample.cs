// Sample 12 — converting standard attention into MLA (TransMLA, Meng et al. 2025; MHA2MLA, Ji et al. 2025).
// 1. Train a tiny MQA model on multi-query associative recall, convert it into MLA at the same KV bytes per token
//    (kv_lora_rank = Dh, qk_rope_head_dim = Dh: the shared RoPE key k^R carries MQA's key, the latent its value),
//    and check the logits are the source's (fp32 rounding) on the naive and absorbed paths; save it as a Hugging Face
//    DeepSeek checkpoint folder and load it back.
// 2. Convert a trained MHA model at a smaller cache with each partial-RoPE strategy and SVD factorization, and
//    sweep the latent rank: quality right after conversion (before any fine-tune).
// The math is a library call (WhaleTech.Model.MlaConversion.FromStandard); `whale mla convert` is the same on a folder.
using WhaleTech.Hub;
using WhaleTech.Lab.Mla;
using WhaleTech.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace WhaleTech.Samples;

public static class S12MlaConvert
{
    public const string Title = "GQA/MQA → MLA exactly, MHA → MLA approximately (TransMLA, MHA2MLA)";

    public static void Run(SampleContext ctx)
    {
        var task = new MlaFrontierOptions { EvalSequences = ctx.Quick ? 128 : 512, EvalEvery = ctx.Quick ? 40 : 100 };
        int steps = ctx.Quick ? 40 : 1500;
        DeepSeekLM Train(string variant)
        {
            TorchSharp.torch.manual_seed(1000);
            var m = new DeepSeekLM(MlaFrontier.Config(task, FrontierVariant.Parse(variant)));
            m.to(ctx.Device);
            MlaFrontier.Train(m, task, steps, task.Loop.LearningRate, 0, 0, ctx.Device, variant);
            return m;
        }
        // 1. MQA → MLA, exact
        using var mqa = Train("mqa");
        var (mla, report) = MlaConversion.FromStandard(mqa);
        using var _ = mla;
        var (srcLoss, srcAcc) = MlaFrontier.Evaluate(mqa, task, 0, ctx.Device);
        ctx.Out.WriteLine($"MQA source after {steps} steps: eval loss {srcLoss:F4}, recall {srcAcc:P1}; KV {report.SourceKvElementsPerTokenPerLayer} elements/token/layer");
        ctx.Out.WriteLine($"→ MLA kv_lora_rank {report.KvLoraRank}, qk_rope_head_dim {report.RopeDims}, qk_nope_head_dim {report.NopeDims}: KV {report.TargetKvElementsPerTokenPerLayer} elements/token/layer");
        var (ids, _, _) = MlaQuality.Batch(task.Task, 32, new Random(5));
        ids = ids.to(ctx.Device);
        double worst = 0;
        using (no_grad())
        {
            var expected = mqa.forward(ids);
            foreach (var mode in new[] { WhaleTech.Attention.MlaMode.Naive, WhaleTech.Attention.MlaMode.Absorbed })
            {
                mla.SetMlaMode(mode);
                double d = (mla.forward(ids) - expected).abs().max().item<float>();
                worst = Math.Max(worst, d);
                ctx.Out.WriteLine($"  {mode,-8} max |logit − source logit| = {d:E2}");
            }
        }
        ctx.Out.WriteLine($"Converted MQA computes the source's function (≤ 1e-5): {worst <= 1e-5 && report.Exact}");
        mla.SetMlaMode(WhaleTech.Attention.MlaMode.Auto);                          // as a freshly loaded model
        var folder = Path.Combine(ctx.OutDir, "mla-from-mqa");
        mla.SavePretrained(folder);
        var (back, _) = DeepSeekLM.FromPretrained(folder);
        using (back)
        using (no_grad())
        {
            back.to(ctx.Device);
            double d = (back.forward(ids) - mla.forward(ids)).abs().max().item<float>();
            ctx.Out.WriteLine($"Saved {folder} (config.json: whaletech_attention = {back.Config.Attention}, kv_lora_rank {back.Config.KvLoraRank}); reloaded logits identical: {d == 0}");
        }

        // 2. MHA → MLA at a quarter of MHA's cache (Dc 12 + Dr 4 = 16 of 64 elements per token per layer)
        using var mha = Train("mha");
        var (mhaLoss, mhaAcc) = MlaFrontier.Evaluate(mha, task, 0, ctx.Device);
        ctx.Out.WriteLine($"\nMHA source: eval loss {mhaLoss:F4}, recall {mhaAcc:P1}, KV 64 elements/token/layer. Right after conversion to Dc 12, Dr 4 (no fine-tune):");
        ctx.Out.WriteLine($"  {"strategy",-9} {"svd",-9} {"eval loss",10} {"recall",8}");
        foreach (var s in Enum.GetValues<RopeSelection>())
            foreach (var f in Enum.GetValues<LatentFactorization>())
            {
                var (m, _) = MlaConversion.FromStandard(mha, new MlaConversionOptions { KvLoraRank = 12, RopeDims = 4, Strategy = s, Factorization = f });
                using (m)
                {
                    var (l, a) = MlaFrontier.Evaluate(m, task, 0, ctx.Device);
                    ctx.Out.WriteLine($"  {s,-9} {f,-9} {l,10:F4} {a,8:P1}");
                }
            }
        ctx.Out.WriteLine("Rank sweep (2-norm pairs, joint SVD, Dr 4): latent error ‖M − AB‖/‖M‖ falls as the rank grows:");
        double prev = double.MaxValue;
        bool falls = true;
        foreach (int r in new[] { 4, 12, 28, 60 })
        {
            var (m, rep) = MlaConversion.FromStandard(mha, new MlaConversionOptions { KvLoraRank = r, RopeDims = 4, Strategy = RopeSelection.Norm });
            using (m)
            {
                var (l, a) = MlaFrontier.Evaluate(m, task, 0, ctx.Device);
                double e = rep.LatentRelativeError.Average();
                falls &= e < prev || e < 1e-9;
                prev = e;
                ctx.Out.WriteLine($"  Dc {r,3}: latent error {e:F4}, eval loss {l:F4}, recall {a:P1}");
            }
        }
        ctx.Out.WriteLine($"Latent error falls with rank: {falls}");
        ctx.Out.WriteLine("Fine-tuning and the from-scratch comparison with CIs: whale mla convert-study (docs/mla.md).");
    }
}
