// Sample 10 — Multi-token prediction (DeepSeek-V3 §2.2, eqs. 21–25) and self-speculative decoding (§5.4.3).
// A tiny MLA model is trained on the synthetic corpus with ONE MTP module (D = 1): besides the next token, the
// module predicts the token after it from [RMSNorm(Emb(t_{i+1})); RMSNorm(h_i)] → eh_proj → one block → the shared
// head, and its cross-entropy is added with weight λ (eq. 25). At inference the MTP module drafts the second token,
// the main model checks [next, draft] in one forward and keeps the draft when its own argmax agrees: the output is
// exactly greedy decoding, in fewer main-model forwards. Then: held-out loss per MTP depth, batch 4 (a round keeps
// the batch's minimum accepted drafts) and speculative sampling at temperature 0.7 (Leviathan et al. 2023: a
// draft x ~ q is kept with probability min(1, p(x)/q(x)), else resampled from norm(max(0, p − q)); the output
// follows plain sampling's distribution exactly).
//
// Shapes: B batch, T time, D hidden, V vocab; the MTP module sees h [B, T−1, D] and Emb(t_{i+1}) [B, T−1, D].
using WhaleTech.Model;
using WhaleTech.Training;
using WhaleTech.Lab.Mtp;

namespace WhaleTech.Samples;

public static class S10MtpSpeculative
{
    public const string Title = "Multi-token prediction and speculative decoding";

    public static void Run(SampleContext ctx)
    {
        // 1. Train with the MTP loss (λ = 0.3): the log shows the main loss and the depth-1 MTP loss.
        var d = new MtpExperimentOptions();
        var o = d with { Model = d.Model with { Layers = 2, Hidden = ctx.Quick ? 64 : 128 }, Loop = d.Loop with { Steps = ctx.Quick ? 60 : 500 }, Depth = 1 };
        ctx.Out.WriteLine($"Training a {o.Model.Layers}-layer MLA model (D = {o.Model.Hidden}) with one MTP module, λ = {o.MtpWeight}, {o.Loop.Steps} steps…");
        var (model, history) = MtpExperiment.Train(o, ctx.Device, m =>
        {
            if (m.Step % Math.Max(1, o.Loop.Steps / 4) == 0)
                ctx.Out.WriteLine($"  step {m.Step,4}: main loss {m.Loss:F3}, MTP loss (t[i+2] from h[i] and t[i+1]) {m.MtpLosses?.FirstOrDefault():F3}");
        });
        using var _ = model;
        ctx.Out.WriteLine($"MTP module parameters: {model.MtpModules.Sum(m => m.parameters().Sum(p => p.numel())):N0} " +
                          $"(embedding and output head are shared with the main model, not copied)");

        // 2. Decode the same prompts plainly and speculatively; compare tokens, acceptance and speed.
        var prompts = ctx.Quick ? MtpExperiment.DefaultPrompts.Take(2).ToList() : MtpExperiment.DefaultPrompts;
        var s = MtpExperiment.MeasureDecode(model, prompts, newTokens: ctx.Quick ? 16 : 64, ctx.Device, warmup: 1, repetitions: ctx.Quick ? 1 : 5);
        foreach (var p in s.Prompts)
            ctx.Out.WriteLine($"  {p.Prompt,-18} → {p.Completion.Replace("\n", "⏎"),-40} accepted {p.AcceptanceRate:P0}, same tokens: {p.SameTokens}");
        ctx.Out.WriteLine($"Acceptance rate {s.AcceptanceRate:P1}, {s.TokensPerForward:F2} tokens per main forward (at most D + 1 = 2).");
        ctx.Out.WriteLine($"Speculative output equals greedy output: {s.AllSame}");
        ctx.Out.WriteLine($"Plain {s.PlainTokensPerSecond:F0} tokens/s, speculative {s.SpeculativeTokensPerSecond:F0} tokens/s ({s.SpeedUp:F2}×; timings are this machine's).");

        // 3. Held-out losses per depth; then batch 4 (a round keeps the batch's minimum accepted drafts) and
        //    speculative sampling at temperature 0.7 (accept with min(1, p/q): exactly plain sampling's distribution).
        ctx.Out.WriteLine(MtpExperiment.EvaluateHeldOut(model, o, ctx.Device, batches: ctx.Quick ? 2 : 8).ToString());
        foreach (var settings in new[] { new DecodeSettings { BatchSize = 4 }, new DecodeSettings { Temperature = 0.7, Seed = 1 } })
        {
            var r = MtpExperiment.MeasureDecode(model, prompts, newTokens: ctx.Quick ? 16 : 64, ctx.Device, warmup: 1, repetitions: ctx.Quick ? 1 : 5, settings);
            ctx.Out.WriteLine($"Batch {settings.BatchSize}, temperature {settings.Temperature}: acceptance {r.AcceptanceRate:P1}, kept after the batch minimum {r.KeptRate:P1}, " +
                              $"{r.TokensPerForward:F2} tokens per main forward, speed-up {r.SpeedUp:F2}×" + (settings.Greedy ? $", same tokens as plain: {r.AllSame}" : ""));
        }
    }
}
