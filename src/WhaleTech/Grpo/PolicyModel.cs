// The GRPO policy: a from-scratch WhaleTech LM (DeepSeekLM, MLA by default) over a character tokenizer,
// its SFT warm start (teacher forcing on task solutions, loss on the completion tokens only) so that the
// first GRPO groups already contain some correct answers, the frozen reference model (a weight copy),
// and held-out evaluation (greedy decoding, exact match).
//
// Shapes: B sequences, Tc completion tokens.
using TorchSharp;
using WhaleTech.Model;
using static TorchSharp.torch;
using WhaleTech.Core;

namespace WhaleTech.Grpo;

public static class PolicyModel
{
    public static CharTokenizer Tokenizer() => new(PromptTemplate.Alphabet);

    public static ModelConfig Config(GrpoOptions o) => o.Policy.Config(Tokenizer().VocabSize, CharTokenizer.Bos, CharTokenizer.Eos);

    /// <summary>The loss-free balancer of a MoE policy (null for a dense one): call AfterOptimizerStep after each
    /// optimizer step (DeepSeek-V3's bias update, γ = 1e-3, sign rule), DiscardStepCounts after a skipped one.</summary>
    public static Moe.LoadBalancer? Balancer(DeepSeekLM model)
        => Moe.MoeLayers.Find(model) is { Count: > 0 } layers ? new Moe.LoadBalancer(layers, Moe.BiasUpdateRule.Sign, Moe.GammaSchedule.Constant(1e-3)) : null;

    /// <summary>A new policy with weights drawn from torch's global RNG seeded with <paramref name="seed"/>.</summary>
    public static DeepSeekLM Create(ModelConfig cfg, int seed, Device device)
    {
        torch.manual_seed(seed);
        var m = new DeepSeekLM(cfg);
        m.to(device);
        return m;
    }

    /// <summary>A frozen copy of <paramref name="model"/> (the reference π_ref, eq. 3).</summary>
    public static DeepSeekLM Clone(DeepSeekLM model)
    {
        var copy = new DeepSeekLM(model.Config);
        copy.to(model.Embedding.weight!.device);
        CopyWeights(model, copy);
        copy.eval();
        foreach (var p in copy.parameters()) p.requires_grad = false;
        return copy;
    }

    /// <summary>Copies every parameter and buffer of <paramref name="from"/> into <paramref name="to"/>.</summary>
    public static void CopyWeights(DeepSeekLM from, DeepSeekLM to)
    {
        using var noGrad = torch.no_grad();
        var src = from.state_dict();
        foreach (var (name, t) in to.state_dict()) t.copy_(src[name]);
    }

    public static int[] PromptIds(CharTokenizer tok, MathProblem p) => [CharTokenizer.Bos, .. tok.Encode(PromptTemplate.Prompt(p))];
    public static int[] SolutionIds(CharTokenizer tok, string solution) => [.. tok.Encode(solution), CharTokenizer.Eos];

    /// <summary>Longest completion the task needs (held-out solutions + EOS) plus slack.</summary>
    public static int DefaultMaxCompletionLength(IReadOnlyList<MathProblem> heldOut) => heldOut.Max(p => p.Solution.Length) + 1 + 4;

    /// <summary>SFT warm start: sft_steps AdamW steps (warmup + cosine to 10%, Training.LrSchedule) of next-token loss on solution tokens.
    /// A share 1 − solvedFraction of examples shows the format with a wrong answer ("partially solved" data).
    /// With sft_target_accuracy &gt; 0, every sft_eval_every steps the greedy exact match on the validation set
    /// (MathTask.Validation: not the held-out problems) is measured and SFT stops once it reaches the target,
    /// so that every seed starts GRPO from about the same accuracy (the SFT transition is sharp and its step
    /// varies by seed). Returns the loss of each step run by this call (a resumed call starts at the checkpoint's step).
    /// With <paramref name="checkpointDir"/>, an SFT checkpoint is written every checkpoint_every steps and when
    /// <paramref name="stop"/> (Ctrl-C) ends the loop early, and <paramref name="resume"/> continues from it bit-exactly.</summary>
    public static List<double> Sft(DeepSeekLM model, MathTask task, GrpoOptions o, IReadOnlySet<string> heldOut, Action<int, double>? progress = null,
        Action<int, double>? validated = null, string? checkpointDir = null, bool resume = false, Training.StopSignal? stop = null)
    {
        var tok = Tokenizer();
        var device = model.Embedding.weight!.device;
        var validation = o.SftTargetAccuracy > 0 ? task.Validation(o.Seed, o.HeldOut, heldOut) : null;
        int validationLength = validation is null ? 0 : DefaultMaxCompletionLength(validation);
        using var opt = new Training.AdamWOptimizer(model.parameters(), o.SftLearningRate, weightDecay: 0.0, beta1: 0.9, beta2: 0.999, moments: o.OptimizerMoments);
        var stepper = new Training.OptimizerStepper(opt, model.parameters(), maxGradNorm: 1.0).AttachBalancer(Balancer(model));   // balancer: MoE policy only
        var losses = new List<double>();
        var schedule = new Training.LrSchedule(o.SftLearningRate, Math.Min(20, o.SftSteps / 10), Math.Max(1, o.SftSteps), Floor: 0.1 * o.SftLearningRate);
        int first = resume && checkpointDir is not null ? GrpoCheckpoint.LoadSft(checkpointDir, model, opt) : 0;
        model.train();
        for (int step = first; step < o.SftSteps; step++)
        {
            if (stop?.Requested == true)
            {
                if (checkpointDir is not null) GrpoCheckpoint.SaveSft(checkpointDir, model, opt, step);
                break;
            }
            using var scope = torch.NewDisposeScope();
            var rng = new Random(MathTask.HashCode32(o.Seed, 0x5F7, step, 0));
            var prompts = new List<int[]>(); var sols = new List<int[]>();
            for (int i = 0; i < o.SftBatch; i++)
            {
                var p = task.Train(o.Seed, -1 - step, i, heldOut);                               // SFT slots: negative steps
                if (o.SftCorpus == "subtraction") p = SubtractionExample(task, rng);
                string answer = o.SftCorpus == "subtraction" ? p.Answer
                    : o.SftCorpus == "unsolved" ? UnsolvedAnswer(task, p, rng)
                    : rng.NextDouble() < o.SftSolvedFraction ? p.Answer : task.Sample(rng).Answer;
                prompts.Add(PromptIds(tok, p)); sols.Add(SolutionIds(tok, PromptTemplate.FormatAnswer(answer)));
            }
            stepper.SetLearningRate(schedule.At(step));
            using var batch = PackedBatch.Create(prompts, sols, device);
            double l = stepper.Run(step, () =>
            {
                var (logp, _) = batch.TokenLogProbs(model);                                      // [B, Tc]
                return -(logp * batch.Mask).sum() / batch.Mask.sum();                            // mean NLL of solution tokens
            }).Loss;
            losses.Add(l);
            progress?.Invoke(step + 1, l);
            if (checkpointDir is not null && (step + 1) % o.CheckpointEvery == 0) GrpoCheckpoint.SaveSft(checkpointDir, model, opt, step + 1);
            if (validation is not null && (step + 1) % o.SftEvalEvery == 0)
            {
                double acc = Evaluate(model, task, validation, validationLength).Accuracy;
                validated?.Invoke(step + 1, acc);
                if (acc >= o.SftTargetAccuracy) break;
            }
        }
        return losses;
    }

    /// <summary>sft_corpus "unsolved": the answer of another random problem that is NOT correct for <paramref name="p"/>.</summary>
    public static string UnsolvedAnswer(MathTask task, MathProblem p, Random rng)
    {
        for (int tries = 0; tries < 1000; tries++)
            if (task.Sample(rng).Answer is var a && !task.IsCorrect(p, a)) return a;
        throw new Runtime.WhaleArgumentException("sft_corpus", "unsolved", $"found no wrong answer for {p.Question}");
    }

    /// <summary>sft_corpus "subtraction": a solved a−b problem (a ≥ b) in the arithmetic task's notation — the same
    /// operand digits, zero padding (answer width digits + 1, as addition's) and reversed answers — never an addition.</summary>
    public static MathProblem SubtractionExample(MathTask task, Random rng)
    {
        if (task is not ArithmeticTask t) throw new Runtime.WhaleArgumentException("sft_corpus", "subtraction", "needs the addition or multiplication task");
        long max = (long)Math.Pow(10, t.Digits);
        long a = rng.NextInt64(max), b = rng.NextInt64(max);
        if (a < b) (a, b) = (b, a);
        int width = t.PadOperands ? t.Digits : 1, answerWidth = t.PadOperands ? t.Digits + 1 : 1;
        string question = a.ToString().PadLeft(width, '0') + "-" + b.ToString().PadLeft(width, '0') + "=" + (t.ReverseAnswer ? ArithmeticTask.ReversedMarker : "");
        string answer = (a - b).ToString().PadLeft(answerWidth, '0');
        return new MathProblem("subtraction", question, t.ReverseAnswer ? AnswerParser.Reverse(answer) : answer, [], a - b);
    }

    /// <summary>Held-out exact match and format rate with greedy decoding, in chunks of <paramref name="chunk"/>.</summary>
    public static (double Accuracy, double Format, string[] Completions) Evaluate(DeepSeekLM model, MathTask task, IReadOnlyList<MathProblem> problems, int maxCompletionLength, int chunk = 256)
    {
        var tok = Tokenizer();
        var completions = new string[problems.Count];
        int correct = 0, formatted = 0;
        for (int s = 0; s < problems.Count; s += chunk)
        {
            var part = problems.Skip(s).Take(chunk).ToList();
            var res = Rollout.Generate(model, part.Select(p => PromptIds(tok, p)).ToList(), part.Select(_ => 0UL).ToList(),
                new RolloutSampling(maxCompletionLength, Temperature: 0));
            for (int i = 0; i < part.Count; i++)
            {
                var text = tok.Decode(res.Completions[i]);
                completions[s + i] = text;
                if (AnswerParser.ExtractAnswer(text) is { } a && task.IsCorrect(part[i], a)) correct++;
                if (AnswerParser.IsWellFormatted(text)) formatted++;
            }
        }
        return (correct / (double)problems.Count, formatted / (double)problems.Count, completions);
    }
}
