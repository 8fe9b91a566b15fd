// Learning-rate schedule: linear warm-up, then cosine decay to a floor (Loshchilov & Hutter 2017, SGDR eq. 5).
//   lr(s) = peak · s/warmup                                             s < warmup
//   lr(s) = floor + ½(peak − floor)(1 + cos(π (s − warmup)/(total − warmup)))   otherwise
namespace WhaleTech.Training;

public sealed record LrSchedule(double Peak, int WarmupSteps, int TotalSteps, double Floor = 0)
{
    public LrSchedule Validate()
    {
        Runtime.Guard.Positive("lr", Peak);
        Runtime.Guard.NonNegative("warmup_steps", WarmupSteps);
        Runtime.Guard.Positive("steps", TotalSteps);
        Runtime.Guard.NonNegative("min_lr", Floor);
        if (Floor > Peak) throw new Runtime.WhaleArgumentException("min_lr", Floor, $"must be ≤ lr = {Peak}");
        return this;
    }

    /// <summary>Learning rate for optimizer step <paramref name="step"/> (0-based).</summary>
    public double At(int step)
    {
        if (step < WarmupSteps) return Peak * (step + 1) / WarmupSteps;
        if (TotalSteps <= WarmupSteps) return Peak;
        double progress = Math.Clamp((double)(step - WarmupSteps) / (TotalSteps - WarmupSteps), 0, 1);
        return Floor + 0.5 * (Peak - Floor) * (1 + Math.Cos(Math.PI * progress));
    }
}
