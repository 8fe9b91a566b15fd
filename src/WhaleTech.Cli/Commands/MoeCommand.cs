// `whale moe …`: DeepSeekMoE load balancing.
//   whale moe experiment   aux-loss baselines vs. auxiliary-loss-free balancing on a small MoE LM (results + plots;
//                          run folders, --checkpoint-every, --resume and Ctrl-C as in Lab/Runs/ExperimentRuns)
using System.CommandLine;
using Spectre.Console;
using WhaleTech.Moe;
using WhaleTech.Runtime;
using WhaleTech.Lab.Moe;
using WhaleTech.Training;

namespace WhaleTech.Cli.Commands;

public static class MoeCommand
{
    public static Command Build()
    {
        var cmd = new Command("moe", "DeepSeekMoE: auxiliary-loss-free load balancing, its baselines and load metrics.");
        cmd.Subcommands.Add(Experiment());
        return cmd;
    }

    static Command Experiment()
    {
        var defaults = new MoeExperimentOptions();
        var device = Cli.DeviceOption();
        var folder = RunFolderOptions.ForExperiment("moe-experiment", "results.json, results.md and the PNG plots");
        var seeds = new Option<int>("--seeds") { Description = "Seeds per method.", DefaultValueFactory = _ => defaults.Seeds };
        var steps = new Option<int>("--steps") { Description = "Optimizer steps per run.", DefaultValueFactory = _ => defaults.Loop.Steps };
        var batch = new Option<int>("--batch-size") { Description = "Sequences per step.", DefaultValueFactory = _ => defaults.Loop.BatchSize };
        var seqLen = new Option<int>("--seq-len") { Description = "Tokens per sequence.", DefaultValueFactory = _ => defaults.SequenceLength };
        var hidden = new Option<int>("--hidden") { Description = "Model width D (multiple of 4).", DefaultValueFactory = _ => defaults.Model.Hidden };
        var layers = new Option<int>("--layers") { Description = "Decoder layers (all MoE).", DefaultValueFactory = _ => defaults.Model.Layers };
        var experts = new Option<int>("--experts") { Description = "Routed experts per layer.", DefaultValueFactory = _ => defaults.Experts };
        var topK = new Option<int>("--top-k") { Description = "Routed experts per token.", DefaultValueFactory = _ => defaults.TopK };
        var shared = new Option<int>("--shared") { Description = "Shared experts.", DefaultValueFactory = _ => defaults.SharedExperts };
        var width = new Option<int>("--expert-width") { Description = "moe_intermediate_size.", DefaultValueFactory = _ => defaults.ExpertWidth };
        var lr = new Option<double>("--lr") { Description = "Peak learning rate.", DefaultValueFactory = _ => defaults.Loop.LearningRate };
        var gamma = new Option<double>("--gamma") { Description = "Bias update speed γ of loss-free balancing.", DefaultValueFactory = _ => defaults.Gamma };
        var lateFrom = new Option<double>("--late-from") { Description = "Fraction of the run after which loss-free balancing switches to --late-gamma (1 = constant γ).", DefaultValueFactory = _ => 1.0 };
        var lateGamma = new Option<double>("--late-gamma") { Description = "γ of the late phase (0 = bias frozen, as DeepSeek-V3 did for its last tokens).", DefaultValueFactory = _ => 0.0 };
        var evalBatches = new Option<int>("--eval-batches") { Description = "Validation batches over which MaxVio_global and the val loss are measured.", DefaultValueFactory = _ => defaults.EvalBatches };
        var only = new Option<string>("--methods") { Description = "Which methods to run: a comma-separated subset of none, aux, loss-free.", DefaultValueFactory = _ => "none,aux,loss-free" };
        var alphas = new Option<string>("--alphas") { Description = "Comma-separated aux-loss α values.", DefaultValueFactory = _ => "1e-2,1e-3,1e-4" };
        var rule = new Option<string>("--rule") { Description = "Bias update rule: sign, centred or proportional.", DefaultValueFactory = _ => "sign" };
        var threads = new Option<int>("--threads") { Description = "CPU threads for libtorch (default 1: this model's ops are too small to parallelize, and extra threads only spin).", DefaultValueFactory = _ => 1 };
        var dispatch = new Option<string>("--dispatch") { Description = "Dispatch path: sorted, bmm, grouped-mm (torch._grouped_mm), expert-loop or token-loop.", DefaultValueFactory = _ => "sorted" };
        var cmd = new Command("experiment", "Train a small DeepSeekMoE LM with no balancing, aux losses α ∈ {1e-2,1e-3,1e-4} and loss-free balancing over " +
                                            "several seeds; report val loss and MaxVio_global with 95% CIs, the dilemma plot, MaxVio curves and heatmaps.")
        { device, folder.Out, folder.CheckpointEvery, folder.Resume, seeds, steps, batch, seqLen, hidden, layers, experts, topK, shared, width, lr, gamma, lateFrom, lateGamma, alphas, rule, evalBatches, only, dispatch, threads };
        cmd.SetAction(parse =>
        {
            var dev = Backend.ResolveDevice(parse.GetValue(device));
            if (dev.type == TorchSharp.DeviceType.CPU) TorchSharp.torch.set_num_threads(ThreadLimits.Check("--threads", parse.GetValue(threads)));
            var o = new MoeExperimentOptions
            {
                Seeds = parse.GetValue(seeds), Loop = defaults.Loop with { Steps = parse.GetValue(steps), BatchSize = parse.GetValue(batch), LearningRate = parse.GetValue(lr) },
                SequenceLength = parse.GetValue(seqLen), Model = defaults.Model with { Hidden = parse.GetValue(hidden), Layers = parse.GetValue(layers) },
                Experts = parse.GetValue(experts), TopK = parse.GetValue(topK),
                SharedExperts = parse.GetValue(shared), ExpertWidth = parse.GetValue(width), Gamma = parse.GetValue(gamma),
                Dispatch = ParseDispatch(parse.GetValue(dispatch)!), EvalBatches = parse.GetValue(evalBatches),
            }.Validate();
            double late = Guard.InRange("--late-from", parse.GetValue(lateFrom), 0, 1);
            double lateG = Guard.NonNegative("--late-gamma", parse.GetValue(lateGamma));
            var kinds = ParseMethods(parse.GetValue(only)!);
            var methods = new List<BalanceMethod>();
            if (kinds.Contains("none")) methods.Add(BalanceMethod.None);
            if (kinds.Contains("aux")) methods.AddRange(ParseAlphas(parse.GetValue(alphas)!).Select(BalanceMethod.AuxLoss));
            if (kinds.Contains("loss-free")) methods.Add(BalanceMethod.LossFree(o.Gamma, ParseRule(parse.GetValue(rule)!), late, lateG));
            var dir = parse.GetValue(folder.Out)!;
            using var stop = StopSignal.Listen();
            var runs = folder.Experiment(parse, stop);
            AnsiConsole.MarkupLine($"[bold]MoE balancing experiment[/]: {methods.Count} methods × {o.Seeds} seeds, {o.Loop.Steps} steps each, on {dev}" +
                                   (runs.Resume ? $" (resuming {Markup.Escape(runs.RunsPath!)})" : ""));
            var summary = MoeExperiment.RunAll(methods, o, dev, dir, line => AnsiConsole.WriteLine(line), runs);
            var table = new Table().AddColumn("method").AddColumn("val loss ± 95% CI").AddColumn("MaxVio_global ± 95% CI");
            foreach (var s in summary)
                table.AddRow(Markup.Escape(s.Method), $"{s.ValLoss:F4} ± {s.ValLossCi:F4}", $"{s.MaxVio:F3} ± {s.MaxVioCi:F3}");
            AnsiConsole.Write(table);
            AnsiConsole.MarkupLine($"Wrote {Markup.Escape(Path.GetFullPath(dir))}/results.md, results.json, dilemma.png, maxvio.png, heatmap-*.png");
            return ExperimentCli.Finish(runs, parse, Path.GetFullPath(dir));
        });
        return cmd;
    }

    static MoeDispatch ParseDispatch(string s) => s.Trim().ToLowerInvariant() switch
    {
        "sorted" => MoeDispatch.Sorted,
        "bmm" => MoeDispatch.PaddedBmm,
        "grouped-mm" => MoeDispatch.GroupedMm,
        "expert-loop" => MoeDispatch.ExpertLoop,
        "token-loop" => MoeDispatch.TokenLoop,
        _ => throw new WhaleArgumentException("--dispatch", s, "must be sorted, bmm, grouped-mm, expert-loop or token-loop"),
    };

    static HashSet<string> ParseMethods(string s)
    {
        var set = s.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(m => m.ToLowerInvariant()).ToHashSet();
        if (set.Count == 0 || set.Any(m => m is not ("none" or "aux" or "loss-free")))
            throw new WhaleArgumentException("--methods", s, "must be a comma-separated subset of none, aux, loss-free");
        return set;
    }

    static BiasUpdateRule ParseRule(string s) => s.Trim().ToLowerInvariant() switch
    {
        "sign" => BiasUpdateRule.Sign,
        "centred" or "centered" => BiasUpdateRule.MeanCentredSign,
        "proportional" => BiasUpdateRule.Proportional,
        _ => throw new WhaleArgumentException("--rule", s, "must be sign, centred or proportional"),
    };

    static IEnumerable<double> ParseAlphas(string s) => s.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(a =>
        double.TryParse(a, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var v) && v > 0 && double.IsFinite(v)
            ? v : throw new WhaleArgumentException("--alphas", s, "must be a comma-separated list of positive numbers, e.g. 1e-2,1e-3"));
}
