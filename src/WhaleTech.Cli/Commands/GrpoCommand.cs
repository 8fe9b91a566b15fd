// `whale grpo sft|train|eval` — GRPO on verifiable math tasks (src/WhaleTech/Grpo).
//   whale grpo sft   --task addition --digits 3 --sft-steps 300 --out runs/sft
//   whale grpo train --task addition --digits 3 --steps 300 --seed 1 --out runs/x  [--init runs/sft/sft.bin] [--resume]
//   whale grpo eval  --run runs/x
//   whale grpo train --config run.json --seed 2 --out runs/y   (config file, then only the flags given; GrpoConfigFile.cs)
// Every field of GrpoOptions is an option (TRL GRPOConfig names, kebab-case). The resolved configuration is
// printed at start and written to <out>/options.json.
using System.CommandLine;
using Spectre.Console;
using WhaleTech.Grpo;
using WhaleTech.Runtime;
using WhaleTech.Training;
using WhaleTech.Lab.Grpo;

namespace WhaleTech.Cli.Commands;

public static class GrpoCommand
{
    public static Command Build()
    {
        var cmd = new Command("grpo", "GRPO (DeepSeekMath) on verifiable math tasks: SFT warm start, training, evaluation.");
        cmd.Subcommands.Add(BuildSft());
        cmd.Subcommands.Add(BuildTrain());
        cmd.Subcommands.Add(BuildEval());
        return cmd;
    }

    // ---- the options, each bound to one GrpoOptions field ------------------------------------------

    sealed class Binder
    {
        public readonly List<Option> Options = [];
        readonly List<Func<ParseResult, GrpoOptions, GrpoOptions>> _apply = [];

        public void Add<T>(string name, string description, T @default, Func<GrpoOptions, T, GrpoOptions> set)
        {
            // Help shows every default ("[default: …]" from the factory; System.CommandLine omits it for a false bool).
            if (@default is false) description += " [default: False]";
            var opt = new Option<T>(name) { Description = description, DefaultValueFactory = _ => @default };
            Options.Add(opt);
            _apply.Add((p, o) => p.GetResult(opt) is { Implicit: false } ? set(o, p.GetValue(opt)!) : o);   // only flags the user gave
        }

        /// <summary>The options: <paramref name="config"/> (or the defaults), then every flag given on the command line.</summary>
        public GrpoOptions Bind(ParseResult p, GrpoOptions? config = null) => _apply.Aggregate(config ?? new GrpoOptions(), (o, f) => f(p, o)).Validate();
    }

    static Option<string?> ConfigOption() => new("--config")
    {
        Description = "A JSON config (GrpoOptions' JSON names = TRL GRPOConfig's where they exist, e.g. a run's options.json); flags given here override it.",
    };

    static GrpoOptions Resolve(Binder b, ParseResult p, Option<string?> config)
        => b.Bind(p, p.GetValue(config) is { } path ? GrpoConfigFile.Read(path) : null);

    static void PrintConfig(GrpoOptions o, string outDir)
    {
        Console.WriteLine($"resolved configuration (also {Path.Combine(outDir, GrpoRun.OptionsFile)}):");
        Console.WriteLine(GrpoConfigFile.ToJson(o));
    }

    static Binder TaskAndModel(Binder b)
    {
        var d = new GrpoOptions();
        b.Add("--task", "addition, multiplication, countdown or linear.", d.Task, (o, v) => o with { Task = v });
        b.Add("--digits", "Operand digits (addition, multiplication).", d.Digits, (o, v) => o with { Digits = v });
        b.Add("--reverse-answer", "Addition/multiplication: answer least-significant digit first (question a+b=r:).", d.ReverseAnswer, (o, v) => o with { ReverseAnswer = v });
        b.Add("--pad-operands", "Addition/multiplication: zero-pad operands (07+45=) and the reference answer to fixed widths.", d.PadOperands, (o, v) => o with { PadOperands = v });
        b.Add("--numbers", "Countdown: how many numbers.", d.Numbers, (o, v) => o with { Numbers = v });
        b.Add("--max-number", "Countdown: largest number; linear: largest |x| and |b|.", d.MaxNumber, (o, v) => o with { MaxNumber = v });
        b.Add("--max-coefficient", "Linear: largest |a|.", d.MaxCoefficient, (o, v) => o with { MaxCoefficient = v });
        b.Add("--held-out", "Held-out problems for evaluation.", d.HeldOut, (o, v) => o with { HeldOut = v });
        b.Add("--rewards", "reward_funcs with weights: accuracy, format, partial (e.g. accuracy:1,format:0.1).", d.Rewards, (o, v) => o with { Rewards = v });
        b.Add("--attention", "Policy attention: mla, mha, gqa or mqa.", d.Policy.Attention, (o, v) => o with { Policy = o.Policy with { Attention = v } });
        b.Add("--hidden", "Policy hidden size.", d.Policy.Hidden, (o, v) => o with { Policy = o.Policy with { Hidden = v } });
        b.Add("--layers", "Policy layers.", d.Policy.Layers, (o, v) => o with { Policy = o.Policy with { Layers = v } });
        b.Add("--heads", "Policy attention heads.", d.Policy.Heads, (o, v) => o with { Policy = o.Policy with { Heads = v } });
        b.Add("--moe-experts", "Routed experts per layer: a DeepSeekMoE policy with loss-free balancing (0 = dense).", d.Policy.MoeExperts, (o, v) => o with { Policy = o.Policy with { MoeExperts = v } });
        b.Add("--moe-top-k", "Routed experts per token of a MoE policy.", d.Policy.MoeTopK, (o, v) => o with { Policy = o.Policy with { MoeTopK = v } });
        b.Add("--sft-steps", "SFT warm-start steps (fewer = weaker start).", d.SftSteps, (o, v) => o with { SftSteps = v });
        b.Add("--sft-batch", "SFT batch size.", d.SftBatch, (o, v) => o with { SftBatch = v });
        b.Add("--sft-lr", "SFT learning rate.", d.SftLearningRate, (o, v) => o with { SftLearningRate = v });
        b.Add("--sft-target-accuracy", "Stop SFT once greedy validation exact match reaches this (0 = run all --sft-steps).", d.SftTargetAccuracy, (o, v) => o with { SftTargetAccuracy = v });
        b.Add("--sft-eval-every", "Check --sft-target-accuracy every N SFT steps.", d.SftEvalEvery, (o, v) => o with { SftEvalEvery = v });
        b.Add("--optimizer-moments", "AdamW moments of SFT and GRPO: fp32 or bf16 (DeepSeek-V3 §3.3).", WhaleTech.Training.MomentPrecisions.Name(d.OptimizerMoments), (o, v) => o with { OptimizerMoments = WhaleTech.Training.MomentPrecisions.Parse("--optimizer-moments", v) });
        b.Add("--sft-corpus", "Warm-start data: solutions; unsolved (the task's questions with wrong answers only); subtraction (solved a-b in the task's notation, no target problem).", d.SftCorpus, (o, v) => o with { SftCorpus = v });
        b.Add("--sft-solved-fraction", "Share of SFT examples with a correct answer (rest: format only).", d.SftSolvedFraction, (o, v) => o with { SftSolvedFraction = v });
        b.Add("--seed", "Seed of weights, data and every sampling stream.", d.Seed, (o, v) => o with { Seed = v });
        return b;
    }

    static Binder Grpo(Binder b)
    {
        var d = new GrpoOptions();
        b.Add("--steps", "GRPO steps.", d.Steps, (o, v) => o with { Steps = v });
        b.Add("--prompts-per-step", "Prompts per step (P).", d.PromptsPerStep, (o, v) => o with { PromptsPerStep = v });
        b.Add("--num-generations", "Samples per prompt (G).", d.NumGenerations, (o, v) => o with { NumGenerations = v });
        b.Add("--max-completion-length", "Max new tokens (0 = task's longest solution + 4).", d.MaxCompletionLength, (o, v) => o with { MaxCompletionLength = v });
        b.Add("--temperature", "Sampling temperature.", d.Temperature, (o, v) => o with { Temperature = v });
        b.Add("--top-k", "Top-k (0 = off).", d.TopK, (o, v) => o with { TopK = v });
        b.Add("--top-p", "Top-p (1 = off).", d.TopP, (o, v) => o with { TopP = v });
        b.Add("--lr", "GRPO learning rate (AdamW).", d.LearningRate, (o, v) => o with { LearningRate = v });
        b.Add("--warmup-steps", "Linear LR warmup steps.", d.WarmupSteps, (o, v) => o with { WarmupSteps = v });
        b.Add("--lr-scheduler", "After warmup: constant or cosine (to --min-lr-ratio · lr at the last step).", GrpoOptions.Snake(d.LrScheduler.ToString()), (o, v) => o with { LrScheduler = GrpoOptions.ParseEnum<LrSchedulerType>("--lr-scheduler", v) });
        b.Add("--min-lr-ratio", "Cosine floor as a share of --lr.", d.MinLrRatio, (o, v) => o with { MinLrRatio = v });
        b.Add("--max-grad-norm", "Gradient clipping norm.", d.MaxGradNorm, (o, v) => o with { MaxGradNorm = v });
        b.Add("--scale-rewards", "Advantages: group, batch, none (Dr. GRPO) or rloo.", GrpoOptions.Snake(d.Advantage.ToString()), (o, v) => o with { Advantage = GrpoOptions.ParseEnum<AdvantageKind>("--scale-rewards", v) });
        b.Add("--bessel", "Group std with Bessel's correction (÷(G−1)); false = ÷G.", d.Bessel, (o, v) => o with { Bessel = v });
        b.Add("--advantage-eps", "eps in (r − mean)/(std + eps).", d.AdvantageEps, (o, v) => o with { AdvantageEps = v });
        b.Add("--epsilon", "Clip range ε.", d.Epsilon, (o, v) => o with { Epsilon = v });
        b.Add("--epsilon-high", "Upper clip ε_high (DAPO clip-higher); -1 = ε.", d.EpsilonHigh ?? -1.0, (o, v) => o with { EpsilonHigh = v < 0 ? null : v });
        b.Add("--beta", "KL coefficient β (0 = no reference model).", d.Beta, (o, v) => o with { Beta = v });
        b.Add("--kl-estimator", "k1, k2 or k3.", GrpoOptions.Snake(d.KlEstimator.ToString()), (o, v) => o with { KlEstimator = GrpoOptions.ParseEnum<KlEstimator>("--kl-estimator", v) });
        b.Add("--ref-sync-steps", "Copy the policy into the reference every N steps (0 = never).", d.RefModelSyncSteps, (o, v) => o with { RefModelSyncSteps = v });
        b.Add("--loss-type", "Loss aggregation: " + string.Join("; ", LossAggregators.Names.Select(n => $"{n} = {LossAggregators.Get(n).Formula}")) + ".", d.LossType,
              (o, v) => o with { LossType = LossAggregators.Get(v, "--loss-type").Name });
        b.Add("--num-iterations", "μ: updates per generation batch (against π_old).", d.NumIterations, (o, v) => o with { NumIterations = v });
        b.Add("--micro-batches", "Gradient-accumulation micro-batches per update.", d.MicroBatches, (o, v) => o with { MicroBatches = v });
        b.Add("--mask-truncated", "Exclude completions that hit the length limit from the loss.", d.MaskTruncatedCompletions, (o, v) => o with { MaskTruncatedCompletions = v });
        b.Add("--dynamic-sampling", "DAPO: drop groups whose rewards are all equal and sample more.", d.DynamicSampling, (o, v) => o with { DynamicSampling = v });
        b.Add("--max-sampling-rounds", "Dynamic sampling: most generation rounds per step.", d.MaxSamplingRounds, (o, v) => o with { MaxSamplingRounds = v });
        b.Add("--eval-every", "Held-out evaluation every N steps.", d.EvalEvery, (o, v) => o with { EvalEvery = v });
        b.Add("--sample-every", "Print and log sample completions every N steps.", d.SampleEvery, (o, v) => o with { SampleEvery = v });
        b.Add("--checkpoint-every", "Checkpoint every N steps.", d.CheckpointEvery, (o, v) => o with { CheckpointEvery = v });
        return b;
    }

    static Option<string> Out(string dflt) => new("--out") { Description = "Output folder.", DefaultValueFactory = _ => dflt };
    static Option<int> Threads() => new("--threads") { Description = "torch CPU threads (0 = WhaleTech's default: 1, or WHALETECH_THREADS).", DefaultValueFactory = _ => 0 };

    static Command BuildSft()
    {
        var b = TaskAndModel(new Binder());
        var (device, outDir, threads) = (Cli.DeviceOption(), Out("runs/grpo-sft"), Threads());
        var config = ConfigOption();
        var init = new Option<string?>("--init") { Description = "Continue SFT from these weights (sft.bin/policy.bin; a fresh schedule over --sft-steps)." };
        var resume = new Option<bool>("--resume") { Description = "Continue from <out>/sft-checkpoint (written every 50 steps and on Ctrl-C); bit-exact with an uninterrupted run." };
        var cmd = new Command("sft", "Supervised warm start on task solutions; saves sft.bin and reports held-out exact match.") { device, outDir, threads, config, init, resume };
        foreach (var o in b.Options) cmd.Options.Add(o);
        Validation.Rules.AddCheck(cmd, v => Validation.Rules.GrpoMemory(b.Bind(v.Parse), grpo: false));
        cmd.SetAction(p =>
        {
            var options = Resolve(b, p, config);
            PrintConfig(options, p.GetValue(outDir)!);
            var dev = Setup(p.GetValue(device), p.GetValue(threads));
            var initPath = p.GetValue(init);
            if (initPath is not null) Guard.ExistingFile("--init", initPath);
            using var stop = StopSignal.Listen();
            GrpoRun.Sft(options, p.GetValue(outDir)!, dev, Events(options, interactive: false), initPath, stop, p.GetValue(resume));
            if (stop.Requested)
            {
                AnsiConsole.MarkupLine($"Interrupted: SFT checkpoint in [bold]{Markup.Escape(Path.Combine(p.GetValue(outDir)!, GrpoRun.SftCheckpointDir))}[/]. Continue with the same options and --resume.");
                return StopSignal.ExitCode;
            }
            return 0;
        });
        return cmd;
    }

    static Command BuildTrain()
    {
        var b = Grpo(TaskAndModel(new Binder()));
        var (device, outDir, threads) = (Cli.DeviceOption(), Out("runs/grpo"), Threads());
        var init = new Option<string?>("--init") { Description = "Start from these SFT weights (sft.bin) instead of running SFT." };
        var resume = new Option<bool>("--resume") { Description = "Continue from <out>/checkpoint (its stored options win)." };
        var plain = new Option<bool>("--plain") { Description = "Plain log lines instead of the live table." };
        var config = ConfigOption();
        var cmd = new Command("train", "SFT warm start (unless --init) then GRPO; metrics.jsonl, samples, plots, checkpoints in --out.") { device, outDir, threads, init, resume, plain, config };
        foreach (var o in b.Options) cmd.Options.Add(o);
        Validation.Rules.AddCheck(cmd, v => Validation.Rules.GrpoMemory(b.Bind(v.Parse), grpo: true));
        cmd.SetAction(p =>
        {
            var options = Resolve(b, p, config);
            var ckptState = Path.Combine(p.GetValue(outDir)!, GrpoRun.CheckpointDir, GrpoCheckpoint.StateFile);
            PrintConfig(p.GetValue(resume) && File.Exists(ckptState) ? GrpoCheckpoint.ReadState(Path.GetDirectoryName(ckptState)!).Options : options, p.GetValue(outDir)!);
            var dev = Setup(p.GetValue(device), p.GetValue(threads));
            var initPath = p.GetValue(init);
            if (initPath is not null) Guard.ExistingFile("--init", initPath);
            bool interactive = !p.GetValue(plain) && !Console.IsOutputRedirected && AnsiConsole.Profile.Capabilities.Interactive;
            GrpoSummary summary;
            using var stop = StopSignal.Listen();
            if (interactive)
            {
                summary = null!;
                RunProgress sftProgress = new(), grpoProgress = new();
                (int, double, double)? lastEval = null;
                string? caption = null;
                AnsiConsole.Live(LiveTable("start", 0, options.Steps, new Dictionary<string, double>(), grpoProgress)).AutoClear(false).Start(ctx =>
                {
                    void Show(Table t) { ctx.UpdateTarget(t); ctx.Refresh(); }
                    var ev = new GrpoRunEvents
                    {
                        Message = msg => { caption = msg; },
                        SftStep = (s, n, l) =>
                        {
                            sftProgress.Mark(s);
                            if (s % 10 == 0 || s == n) Show(LiveTable("SFT", s, n, new Dictionary<string, double> { ["sft/loss"] = l }, sftProgress, null, caption));
                        },
                        GrpoStart = (first, n) => grpoProgress = new RunProgress(first),
                        Step = (s, n, m) =>
                        {
                            grpoProgress.Mark(s);
                            if (m.TryGetValue("eval/accuracy", out var acc)) lastEval = (s, acc, m.GetValueOrDefault("eval/format"));
                            Show(LiveTable("GRPO", s, n, m, grpoProgress, lastEval, caption));
                        },
                    };
                    summary = GrpoRun.Train(options, p.GetValue(outDir)!, dev, initPath, p.GetValue(resume), ev, stop);
                });
            }
            else summary = GrpoRun.Train(options, p.GetValue(outDir)!, dev, initPath, p.GetValue(resume), Events(options, interactive: false), stop);
            Cli.PrintTable("GRPO summary", [
                ("task", summary.Task), ("seed", summary.Seed.ToString()), ("parameters", summary.Parameters.ToString("N0")),
                ("steps", summary.Steps.ToString()), ("SFT steps", summary.SftStepsRun?.ToString() ?? "-"), ("held-out at start", summary.SftAccuracy.ToString("P1")),
                ("held-out final", summary.FinalAccuracy.ToString("P1")), ("held-out best", summary.BestAccuracy.ToString("P1")),
                ("first step ≥ 95%", summary.FirstStepAtOrAbove95?.ToString() ?? "-"),
                ("SFT time", $"{summary.SftSeconds:F0} s"), ("GRPO time", $"{summary.GrpoSeconds:F0} s"), ("output", p.GetValue(outDir)!)]);
            if (summary.Interrupted)
            {
                AnsiConsole.MarkupLine($"Interrupted at step {summary.Steps} of {options.Steps}: checkpoint, summary and plots in [bold]{Markup.Escape(p.GetValue(outDir)!)}[/]. " +
                                       $"Continue with: whale grpo train --out {Markup.Escape(p.GetValue(outDir)!)} --resume");
                return StopSignal.ExitCode;
            }
            return 0;
        });
        return cmd;
    }

    static Command BuildEval()
    {
        var run = new Option<string>("--run") { Description = "A run folder (options.json + policy.bin or sft.bin).", Required = true };
        var weights = new Option<string?>("--weights") { Description = "Weights to evaluate (default: the run's policy.bin, else sft.bin)." };
        var heldOut = new Option<int?>("--held-out") { Description = "Held-out problems (default: the run's)." };
        var show = new Option<int>("--show") { Description = "Print this many completions.", DefaultValueFactory = _ => 5 };
        var (device, threads) = (Cli.DeviceOption(), Threads());
        var cmd = new Command("eval", "Held-out exact match (greedy) of a GRPO or SFT run.") { run, weights, heldOut, show, device, threads };
        cmd.SetAction(p =>
        {
            var dev = Setup(p.GetValue(device), p.GetValue(threads));
            var (acc, fmt, examples) = GrpoRun.Eval(p.GetValue(run)!, dev, p.GetValue(weights), p.GetValue(heldOut));
            foreach (var (prob, completion) in examples.Take(Math.Max(0, p.GetValue(show))))
                Console.WriteLine($"{prob.Question}  →  {completion}   (answer {prob.Answer})");
            Cli.PrintTable("GRPO eval", [("held-out problems", examples.Count.ToString()), ("exact match", acc.ToString("P1")), ("format", fmt.ToString("P1"))]);
            return 0;
        });
        return cmd;
    }

    static TorchSharp.torch.Device Setup(string? device, int threads)
    {
        var dev = Backend.ResolveDevice(device);
        if (ThreadLimits.Check("--threads", threads, allowZero: true) > 0) TorchSharp.torch.set_num_threads(threads);
        return dev;
    }

    static GrpoRunEvents Events(GrpoOptions o, bool interactive)
    {
        RunProgress sft = new(), grpo = new();
        return new()
        {
            Message = Console.WriteLine,
            SftStep = (s, n, l) =>
            {
                sft.Mark(s);
                if (s % 50 == 0 || s == n) Console.WriteLine($"sft {s}/{n} loss {l:F4} | {sft.Describe(n)}");
            },
            GrpoStart = (first, n) => grpo = new RunProgress(first),
            Step = (s, n, m) =>
            {
                grpo.Mark(s);
                Console.WriteLine(
                    $"step {s}/{n} reward {m["reward"]:F3} ±{m["reward_std"]:F3} zero-std {m["frac_reward_zero_std"]:F2} len {m["completions/mean_length"]:F1} " +
                    $"clipped {m["completions/clipped_ratio"]:F2} entropy {m["entropy"]:F3} kl {m.GetValueOrDefault("kl"):F4} " +
                    $"gen/score/update {m["step_time/generation"]:F2}/{m["step_time/scoring"]:F3}/{m["step_time/update"]:F2}s ({RunProgress.DescribeShares(m)})" +
                    (m.TryGetValue("eval/accuracy", out var a) ? $" | held-out {a:P1}" : "") + $" | {grpo.Describe(n)}");
            },
            Samples = (s, groups) =>
            {
                foreach (var g in groups.Take(1))
                    for (int i = 0; i < Math.Min(3, g.Texts.Length); i++)
                        Console.WriteLine($"  sample  {g.Problem.Question}{g.Texts[i]}   reward {g.Rewards[i]:F2}");
            },
        };
    }

    /// <summary>The live view of a run: at most <see cref="LiveRows"/> rows, so that with its title, header, borders
    /// and caption it fits a 24-row terminal (GrpoLiveViewTests renders it). Metrics that do not fit are in
    /// metrics.jsonl and TensorBoard.</summary>
    public static Table LiveTable(string phase, int step, int total, IReadOnlyDictionary<string, double> m, RunProgress progress,
        (int Step, double Accuracy, double Format)? lastEval = null, string? caption = null)
    {
        var table = new Table().Title("whale grpo train").AddColumn("metric").AddColumn(new TableColumn("value").RightAligned());
        if (caption is not null) table.Caption(Markup.Escape(caption));
        int width = 30, done = total == 0 ? width : (int)(width * (double)Math.Min(step, total) / total);
        table.AddRow(phase, $"[green]{new string('█', done)}[/][grey]{new string('░', width - done)}[/] {step}/{total}");
        table.AddRow("speed", Markup.Escape(progress.Describe(total)));
        string F(string key) => m.TryGetValue(key, out var v) ? FormatMetric(v) : "-";
        if (m.ContainsKey("sft/loss")) table.AddRow("sft/loss", F("sft/loss"));
        if (m.ContainsKey("reward"))
        {
            table.AddRow("step time", Markup.Escape($"{F("step_time/total")} s: {RunProgress.DescribeShares(m)}"));
            table.AddRow("reward ± std", $"{F("reward")} ± {F("reward_std")} (group std {F("reward_group_std/mean")})");
            var fns = m.Keys.Where(k => k.StartsWith("rewards/", StringComparison.Ordinal) && k.EndsWith("/mean", StringComparison.Ordinal)).ToList();
            table.AddRow("rewards", Markup.Escape(string.Join(" · ", fns.Select(k => $"{k["rewards/".Length..^"/mean".Length]} {F(k)}"))));
            table.AddRow("frac_reward_zero_std", F("frac_reward_zero_std"));
            table.AddRow("completions", $"len {F("completions/mean_length")} (max {F("completions/max_length")}) · clipped {F("completions/clipped_ratio")}");
            table.AddRow("entropy · kl", $"{F("entropy")} · {F("kl")}");
            table.AddRow("clip_ratio", $"low {F("clip_ratio/low_mean")} (min {F("clip_ratio/low_min")}) · high {F("clip_ratio/high_mean")} (max {F("clip_ratio/high_max")})");
            table.AddRow("loss · grad_norm", $"{F("loss")} · {F("grad_norm")}");
            table.AddRow("learning_rate", F("learning_rate"));
            if (m.ContainsKey("dynamic_sampling/rounds")) table.AddRow("dynamic sampling", $"rounds {F("dynamic_sampling/rounds")} · kept {F("dynamic_sampling/kept_groups")}");
        }
        if (lastEval is { } e) table.AddRow("held-out", $"{e.Accuracy:P1} at step {e.Step} (format {e.Format:P0})");
        return table;
    }

    /// <summary>Most rows of <see cref="LiveTable"/>.</summary>
    public const int LiveRows = 14;

    /// <summary>A live-table value: F0 from 100 up, F4 down to 0.01, below that exponent form with two significant
    /// digits (a learning rate of 3e-5 reads 3.0e-05, not 0.0000).</summary>
    public static string FormatMetric(double v)
    {
        double a = Math.Abs(v);
        string format = a == 0 || double.IsNaN(v) || double.IsInfinity(v) ? "G" : a >= 100 ? "F0" : a >= 0.01 ? "F4" : "0.0e+00";
        return v.ToString(format, System.Globalization.CultureInfo.InvariantCulture);
    }
}
