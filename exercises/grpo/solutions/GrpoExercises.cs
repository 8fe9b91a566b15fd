// GRPO exercises — reference solutions (see ../skeleton for the tasks and ../README.md).
//
// Shapes: P prompts, G samples per prompt, B sequences, T completion tokens.
using TorchSharp;
using static TorchSharp.torch;

namespace WhaleTech.Exercises.Grpo;

public static class GrpoExercises
{
    public static Tensor GroupAdvantages(Tensor rewards, double eps)
    {
        var mean = rewards.mean([1], keepdim: true);                        // [P, 1]
        var std = rewards.std(1, unbiased: true, keepdim: true);           // [P, 1], ÷(G−1)
        return (rewards - mean) / (std + eps);                             // [P, G]
    }

    public static Tensor K3(Tensor logp, Tensor refLogp)
    {
        var logR = refLogp - logp;
        return logR.exp() - logR - 1;
    }

    public static Tensor ClippedLoss(Tensor logp, Tensor oldLogp, Tensor advantages, Tensor mask, double eps)
    {
        var a = advantages.unsqueeze(1);                                   // [B, 1]
        var ratio = (logp - oldLogp).exp();                                // [B, T]
        var perToken = -torch.minimum(ratio * a, ratio.clamp(1 - eps, 1 + eps) * a);
        return ((perToken * mask).sum(1) / mask.sum(1).clamp_min(1)).mean();
    }

    public static double AdditionReward(string question, string completion)
    {
        int open = completion.IndexOf("<answer>", StringComparison.Ordinal);
        int close = open < 0 ? -1 : completion.IndexOf("</answer>", open, StringComparison.Ordinal);
        if (open < 0 || close < 0) return 0.0;
        var parts = question.TrimEnd('=').Split('+');
        if (parts.Length != 2 || !long.TryParse(parts[0], out var a) || !long.TryParse(parts[1], out var b)) return 0.0;
        var text = completion[(open + "<answer>".Length)..close].Trim();
        return long.TryParse(text, System.Globalization.NumberStyles.AllowLeadingSign, System.Globalization.CultureInfo.InvariantCulture, out var n) && n == a + b ? 1.0 : 0.1;
    }

    public static Tensor StepLoss(string[] questions, string[] completions, Tensor logp, Tensor oldLogp, Tensor refLogp, Tensor mask,
                                  double eps, double beta, double advantageEps)
    {
        int P = questions.Length, G = completions.Length / P;
        var r = new double[P * G];
        for (int b = 0; b < P * G; b++) r[b] = AdditionReward(questions[b / G], completions[b]);
        var rewards = torch.tensor(r, [P, G], dtype: logp.dtype);                         // [P, G]
        var advantages = GroupAdvantages(rewards, advantageEps).reshape(P * G);          // [B]
        var a = advantages.unsqueeze(1);                                                 // [B, 1]
        var ratio = (logp - oldLogp).exp();                                              // [B, T]
        var perToken = -torch.minimum(ratio * a, ratio.clamp(1 - eps, 1 + eps) * a) + beta * K3(logp, refLogp);
        return ((perToken * mask).sum(1) / mask.sum(1).clamp_min(1)).mean();
    }
}
