// The rule of every option and argument of every `whale` command (OptionRule), the cross-option and memory
// checks of each command, and one example per command. WhaleCommands.Root() passes its tree through
// Rules.Apply, which attaches the rules (an option without one is a programming error the tests catch) and
// writes them into --help: "Allowed: …", the default (switches too: how to turn an on-by-default one off),
// and the example. Preflight checks the values against the same rules before a command's action runs.
using System.CommandLine;
using System.Runtime.CompilerServices;
using WhaleTech.Core;
using WhaleTech.Lab.Mla;
using WhaleTech.Runtime;
using static WhaleTech.Cli.Validation.OptionRule;

namespace WhaleTech.Cli.Validation;

public static class Rules
{
    const double IntMax = int.MaxValue;
    const double Million = 1_000_000;
    static int Cores => Environment.ProcessorCount;

    // ---- rules by option: "<command path> <name>" first, then "<name>" -----------------------------

    static readonly Dictionary<string, OptionRule> Common = new()
    {
        ["--device"] = Device,
        ["--seed"] = Int(0, IntMax),
        ["--json"] = Flag, ["--quick"] = Flag, ["--paper"] = Flag, ["--plain"] = Flag, ["--resume"] = Flag, ["--fp8"] = Flag, ["--lenient"] = Flag,
        ["--attention"] = OneOf(AttentionVariants.Names.ToArray()),   // the registry (mla, mha, gqa, mqa built in)
        ["--optimizer-moments"] = OneOf("fp32", "bf16"),
        ["--temperature"] = Real(0, 100, note: "0 = greedy"),
        ["--top-k"] = Int(0, Million, "0 = off"),
        ["--top-p"] = Real(0, 1, minExclusive: true, note: "1 = off"),
        ["--lr"] = Real(0, 10, minExclusive: true),
        ["--steps"] = Int(1, Million),
        ["--hidden"] = Int(4, 65536, "a multiple of 4 × --heads"),
        ["--layers"] = Int(1, 1024),
        ["--heads"] = Int(1, 1024),
        ["--batch"] = Int(1, 65536),
        ["--seq-len"] = Int(2, 256, "the models' max_position_embeddings is 256"),
        ["--seeds"] = Int(1, 100),
        ["--max-new-tokens"] = Int(1, 100_000),
        ["--checkpoint-every"] = Int(0, Million, "0 = only at the end or on Ctrl-C"),
        ["--max-memory"] = new(ValueKind.Memory),
    };

    static readonly Dictionary<string, OptionRule> ByCommand = new()
    {
        ["tour --out"] = OutDir,
        ["train lm --text"] = InFile,
        ["train lm --out"] = OutDir,
        ["generate --model"] = InDir,
        ["generate --prompt"] = Text("prompts of the tokenizer's characters (a-z, 0-9, space and + - * / = ( ) < > . , ; : ? ! '), at most 4096 characters each", (n, v) => Prompts(n, (string[])v)),
        ["generate --mla-mode"] = OneOf("auto", "naive", "absorbed"),
        ["kv --model"] = Text("deepseek-v3, deepseek-v2, deepseek-v2-lite, deepseek-67b, llama3-70b, or an existing config.json", (n, v) => KvModel(n, (string)v)),
        ["kv --batch"] = Int(1, Million),
        ["kv --context"] = Int(1, 100 * Million),
        ["kv --budget-gib"] = Real(0, Million, minExclusive: true),
        ["kv --dtype"] = OneOf("bf16", "fp16", "fp32", "fp8"),
        ["kv --gqa-kv-heads"] = Int(1, 1024),
        ["mla bench --shapes"] = OneOf("v3", "v2-lite", "deepseek-v3", "deepseek-v2-lite"),
        ["mla bench --batch"] = Ints(1, 4096),
        ["mla bench --context"] = Ints(1, Million),
        ["mla bench --iterations"] = Int(1, 10_000),
        ["mla bench --out"] = OutFile,
        ["mla quality --out"] = OutDir,
        ["mla frontier --variants"] = Text("mha, mqa, gqaN or mla-<kv_lora_rank>-<rope_dims>", (n, v) =>
        {
            foreach (var x in (string[])v)
                if (!System.Text.RegularExpressions.Regex.IsMatch(x, @"^(mha|mqa|gqa[1-9][0-9]{0,2}|mla-[1-9][0-9]{0,3}-[1-9][0-9]{0,2})$"))
                    throw new WhaleArgumentException(n, x, "must be mha, mqa, gqaN or mla-<kv_lora_rank>-<rope_dims> (e.g. mla-8-4)");
        }),
        ["mla frontier --eval-every"] = Int(1, Million),
        ["mla frontier --eval-sets"] = Int(0, 1000, "0 = off"),
        ["mla frontier --first-seed"] = Int(0, Million),
        ["mla frontier --converged-gain"] = Real(0, 10, minExclusive: true),
        ["mla frontier --out"] = OutDir,
        ["mla frontier --pairs"] = Int(1, 64),
        ["mla frontier --symbols"] = Int(2, 256),
        ["mla frontier --task"] = OneOf("mqar", "language"),
        ["mla frontier --topics"] = Int(1, 64),
        ["mla frontier --length"] = Int(2, 4096),
        ["mla frontier --from"] = Text("existing mla-frontier.json files", (n, v) =>
        {
            foreach (var f in (string[])v) Guard.ExistingFile(n, f);
        }),
        ["mla convert checkpoint"] = InDir,
        ["mla convert --kv-lora-rank"] = Int(1, 65536),
        ["mla convert --rope-dims"] = Int(2, 4096, "even, at most the head dim"),
        ["mla convert --strategy"] = OneOf("high", "low", "uniform", "2-norm"),
        ["mla convert --svd"] = OneOf("joint", "separate"),
        ["mla convert --latent-norm"] = OneOf("linearized", "rms"),
        ["mla convert --out"] = OutDir,
        ["mla convert-study --source-steps"] = Int(1, Million),
        ["mla convert-study --finetune-steps"] = Int(1, Million),
        ["mla convert-study --out"] = OutDir,
        ["mla convert-study --pairs"] = Int(1, 64),
        ["mla convert-study --symbols"] = Int(2, 256),
        ["moe experiment --out"] = OutDir,
        // The experiments' run folders (Lab/Runs): a finished run writes its result record, not a checkpoint.
        ["moe experiment --checkpoint-every"] = Int(0, Million, "0 = only on Ctrl-C"),
        ["fp8 train --checkpoint-every"] = Int(0, Million, "0 = only on Ctrl-C"),
        ["mla quality --checkpoint-every"] = Int(0, Million, "0 = only on Ctrl-C"),
        ["mla convert-study --checkpoint-every"] = Int(0, Million, "0 = only on Ctrl-C"),
        ["mla frontier --checkpoint-every"] = Int(0, Million, "0 = only on Ctrl-C"),
        ["moe experiment --batch-size"] = Int(1, 65536),
        ["moe experiment --hidden"] = Int(16, 65536, "a multiple of 16: 4 heads of a multiple of 4 dimensions"),
        ["fp8 train --hidden"] = Int(16, 65536, "a multiple of 16: 4 heads of a multiple of 4 dimensions"),
        ["moe experiment --experts"] = Int(2, 1024),
        ["moe experiment --top-k"] = Int(1, 1024, "≤ --experts"),
        ["moe experiment --shared"] = Int(0, 64),
        ["moe experiment --expert-width"] = Int(1, 65536),
        ["moe experiment --gamma"] = Real(0, 10),
        ["moe experiment --late-from"] = Real(0, 1, note: "1 = constant γ"),
        ["moe experiment --late-gamma"] = Real(0, 10, note: "0 = bias frozen"),
        ["moe experiment --alphas"] = Reals(0, 10, minExclusive: true),
        ["moe experiment --rule"] = OneOf("sign", "centred", "centered", "proportional"),
        ["moe experiment --eval-batches"] = Int(1, 10_000),
        ["moe experiment --methods"] = SubsetOf("none", "aux", "loss-free"),
        ["moe experiment --dispatch"] = OneOf("sorted", "bmm", "grouped-mm", "expert-loop", "token-loop"),
        ["moe experiment --threads"] = Int(1, Cores, "this machine's logical cores"),
        ["fp8 cast values"] = Text("numbers such as 465, -1e-30, inf, nan, 2^-10 or 1.5*2^-10", (n, v) => { foreach (var s in (string[])v) Commands.Fp8Command.ParseNumber(s); }),
        ["fp8 sweep --start"] = Int(0, uint.MaxValue),
        ["fp8 sweep --count"] = Int(1, 1L << 32),
        ["fp8 sweep --chunk"] = Int(1, 1 << 26),
        ["fp8 sweep --out"] = OutFile,
        ["fp8 lab --rows"] = Int(1, 1 << 24),
        ["fp8 lab --cols"] = Int(1, 1 << 24),
        ["fp8 lab --outliers"] = Int(0, 1 << 24, "≤ --rows and ≤ --cols"),
        ["fp8 lab --seed"] = Int(0, long.MaxValue),
        ["fp8 lab --placement"] = OneOf("contiguous", "random"),
        ["fp8 lab --out"] = OutPrefix,
        ["fp8 accum --bits"] = Int(1, 23),
        ["fp8 accum --nc"] = Int(1, 1 << 20),
        ["fp8 accum --k"] = Ints(1, 1 << 20),
        ["fp8 accum --out"] = OutPrefix,
        ["fp8 train --seeds"] = Ints(0, IntMax),
        ["fp8 train --recipes"] = SubsetOf(WhaleTech.Fp8.Fp8Recipe.All.Select(r => r.Name).ToArray()),
        ["fp8 train --optimizer-moments"] = SubsetOf("fp32", "bf16"),
        ["fp8 train --out"] = OutPrefix,
        ["fp8 analyze model"] = InFile,
        ["fp8 analyze --format"] = OneOf("e4m3", "e5m2"),
        ["fp8 analyze --write-roundtrip"] = OutFile,
        ["fp8 analyze --json"] = OutFile,
        ["checkpoint inspect folder"] = InDir,
        ["checkpoint generate folder"] = InDir,
        ["checkpoint generate --ids"] = Text("comma-separated non-negative integer token ids (no empty entries)", (n, v) => { foreach (var s in (string[])v) Ids(n, s); }),
        ["checkpoint convert from"] = InDir,
        ["checkpoint convert to"] = OutDir,
        ["checkpoint convert --max-shard-mb"] = Int(1, 10 * Million),
        ["checkpoint convert --dtype"] = OneOf("float32", "bfloat16", "float16"),
        ["checkpoint parity folder"] = InDir,
        ["checkpoint parity --out"] = OutFile,
        ["checkpoint export-parity outdir"] = OutDir,
        ["mtp train --depth"] = Int(1, 16),
        ["mtp train --mtp-weight"] = Real(0, 10, note: "0 = off"),
        ["mtp train --out"] = OutDir,
        ["mtp speculate --model"] = InDir,
        ["mtp speculate --prompt"] = Text("prompts of the tokenizer's characters, at most 4096 characters each", (n, v) => Prompts(n, (string[])v)),
        ["mtp speculate --new-tokens"] = Int(1, 4096),
        ["mtp speculate --batch-size"] = Int(1, 4096),
        ["mtp speculate --repetitions"] = Int(1, 1000),
        ["mtp speculate --warmup"] = Int(0, 1000),
        ["mtp speculate --out"] = OutDir,
        ["mtp speculate --name"] = Text("letters, digits, '-' or '_' (it names the result files)", (n, v) => { var s = (string)v; if (s.Length == 0 || s.Length > 100 || !s.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_')) throw new WhaleArgumentException(n, s, "must be 1–100 letters, digits, '-' or '_'"); }),
    };

    // GRPO: the same names in sft, train and eval.
    static readonly Dictionary<string, OptionRule> Grpo = new()
    {
        ["--out"] = OutDir,
        ["--threads"] = Int(0, Cores, "0 = WhaleTech's default: 1, or WHALETECH_THREADS"),
        ["--init"] = InFile,
        ["--config"] = InFile,                                                      // a GRPOConfig-style JSON (GrpoConfigFile)
        ["--sft-corpus"] = OneOf("solutions", "unsolved", "subtraction"),
        ["--task"] = OneOf(WhaleTech.Grpo.GrpoTasks.Names.ToArray()),              // the task registry
        ["--digits"] = Int(1, 9),
        ["--reverse-answer"] = Flag, ["--pad-operands"] = Flag, ["--bessel"] = Flag, ["--mask-truncated"] = Flag, ["--dynamic-sampling"] = Flag,
        ["--numbers"] = Int(2, 6),
        ["--max-number"] = Int(2, 1000),
        ["--max-coefficient"] = Int(1, 1000),
        ["--held-out"] = Int(1, 100_000),
        ["--rewards"] = Text("accuracy, format, partial with weights, e.g. accuracy:1,format:0.1", (_, _) => { }),
        ["--hidden"] = Int(4, 65536, "a multiple of 4 × --heads"),
        ["--moe-experts"] = Int(0, 1024, "0 = dense"),
        ["--moe-top-k"] = Int(1, 1024, "≤ --moe-experts"),
        ["--sft-steps"] = Int(0, Million),
        ["--sft-batch"] = Int(1, 65536),
        ["--sft-lr"] = Real(0, 10, minExclusive: true),
        ["--sft-target-accuracy"] = Real(0, 1, note: "0 = run all --sft-steps"),
        ["--sft-eval-every"] = Int(1, Million),
        ["--sft-solved-fraction"] = Real(0, 1),
        ["--steps"] = Int(0, Million),
        ["--prompts-per-step"] = Int(1, 4096),
        ["--num-generations"] = Int(2, 4096),
        ["--max-completion-length"] = Int(0, 200, "0 = the task's longest solution + 4; prompt + completion ≤ the policy's 256 positions"),
        ["--warmup-steps"] = Int(0, Million),
        ["--lr-scheduler"] = OneOf("constant", "cosine"),
        ["--min-lr-ratio"] = Real(0, 1),
        ["--max-grad-norm"] = Real(0, Million, minExclusive: true),
        ["--scale-rewards"] = OneOf("group", "batch", "none", "rloo"),
        ["--advantage-eps"] = Real(0, 1),
        ["--epsilon"] = Real(0, 10),
        ["--epsilon-high"] = Real(-1, 10, note: "−1 = --epsilon; else ≥ --epsilon"),
        ["--beta"] = Real(0, 100, note: "0 = no reference model"),
        ["--kl-estimator"] = OneOf("k1", "k2", "k3"),
        ["--ref-sync-steps"] = Int(0, Million, "0 = never"),
        ["--loss-type"] = OneOf(WhaleTech.Grpo.LossAggregators.Names.ToArray()),   // the loss registry
        ["--num-iterations"] = Int(1, 100),
        ["--micro-batches"] = Int(1, 4096 * 4096, "≤ --prompts-per-step × --num-generations"),
        ["--max-sampling-rounds"] = Int(1, 100),
        ["--eval-every"] = Int(1, Million),
        ["--sample-every"] = Int(1, Million),
        ["--checkpoint-every"] = Int(1, Million),
        ["--run"] = InDir,
        ["--weights"] = InFile,
        ["--show"] = Int(0, 100_000),
    };

    /// <summary>Descriptions of options declared without one.</summary>
    static readonly Dictionary<string, string> Descriptions = new()
    {
        ["checkpoint generate --max-new-tokens"] = "Tokens to generate per prompt.",
        ["checkpoint generate --seed"] = "Sampling seed.",
        ["checkpoint export-parity --seed"] = "Seed of the tiny models' weights and prompts.",
        ["fp8 lab --seed"] = "Seed of the Gaussian tensor and the outlier positions.",
        ["fp8 train --steps"] = "Optimizer steps per run.",
        ["fp8 train --hidden"] = "hidden_size of the MLA model.",
        ["fp8 train --layers"] = "num_hidden_layers.",
        ["fp8 train --batch"] = "Sequences per step.",
        ["fp8 train --seq-len"] = "Characters per sequence.",
    };

    /// <summary>One example per command (a quick, real invocation).</summary>
    static readonly Dictionary<string, string> Examples = new()
    {
        ["info"] = "whale info --json",
        ["tour"] = "whale tour --quick --out out/tour",
        ["train lm"] = "whale train lm --steps 100 --hidden 64 --out runs/tiny-lm",
        ["generate"] = "whale generate --model runs/tiny-lm --prompt \"17+25=\" --max-new-tokens 8",
        ["kv"] = "whale kv --model deepseek-v3 --context 32768 --batch 8",
        ["mla bench"] = "whale mla bench --batch 1 --context 256 --iterations 5",
        ["mla quality"] = "whale mla quality --seeds 1 --steps 50",
        ["mla frontier"] = "whale mla frontier --quick --out runs/frontier",
        ["mla convert"] = "whale mla convert runs/gqa-lm --kv-lora-rank 16 --rope-dims 8 --strategy high --out runs/gqa-as-mla",
        ["mla convert-study"] = "whale mla convert-study --quick --out runs/convert-study",
        ["moe experiment"] = "whale moe experiment --seeds 1 --steps 50 --methods none,loss-free --out moe-experiment",
        ["grpo sft"] = "whale grpo sft --task addition --digits 2 --sft-steps 100 --out runs/sft",
        ["grpo train"] = "whale grpo train --init runs/sft/sft.bin --steps 50 --dynamic-sampling false --out runs/grpo",
        ["grpo eval"] = "whale grpo eval --run runs/grpo --held-out 100",
        ["fp8 cast"] = "whale fp8 cast 464 465 2^-10",
        ["fp8 sweep"] = "whale fp8 sweep --start 0 --count 1000000 --out sweep.json",
        ["fp8 lab"] = "whale fp8 lab --rows 1024 --cols 1024 --out fp8-lab",
        ["fp8 accum"] = "whale fp8 accum --k 128,1024,4096",
        ["fp8 train"] = "whale fp8 train --steps 30 --seeds 1 --recipes deepseek-v3",
        ["fp8 analyze"] = "whale fp8 analyze runs/tiny-lm/model.safetensors --format e4m3",
        ["checkpoint inspect"] = "whale checkpoint inspect runs/tiny-lm --json",
        ["checkpoint generate"] = "whale checkpoint generate runs/tiny-lm --ids 1,5,6 --max-new-tokens 8",
        ["checkpoint convert"] = "whale checkpoint convert runs/tiny-lm runs/tiny-lm-bf16 --dtype bfloat16",
        ["checkpoint parity"] = "whale checkpoint parity parity/v3 --out parity-v3.json",
        ["checkpoint export-parity"] = "whale checkpoint export-parity parity",
        ["mtp train"] = "whale mtp train --depth 1 --steps 100 --out runs/mtp-lm",
        ["mtp speculate"] = "whale mtp speculate --model runs/mtp-lm --new-tokens 32",
    };

    static readonly ConditionalWeakTable<Symbol, OptionRule> Attached = new();
    static readonly ConditionalWeakTable<Command, Action<Values>> CommandChecks = new();

    /// <summary>The global --max-memory option (recursive: every command has it).</summary>
    public static readonly string MaxMemoryName = "--max-memory";

    /// <summary>Command path without the root: "train lm".</summary>
    public static string PathOf(Command c)
    {
        var parts = new List<string>();
        for (Symbol? s = c; s is Command cmd && s is not RootCommand; s = cmd.Parents.FirstOrDefault()) parts.Insert(0, cmd.Name);
        return string.Join(" ", parts);
    }

    /// <summary>The rule attached to an option or argument (null for help/version options).</summary>
    public static OptionRule? RuleOf(Symbol s) => Attached.TryGetValue(s, out var r) ? r : null;

    public static string? ExampleOf(Command c) => Examples.GetValueOrDefault(PathOf(c));

    /// <summary>Attaches a command's own check (run by Preflight after every option passed its rule).</summary>
    public static void AddCheck(Command command, Action<Values> check)
    {
        if (CommandChecks.TryGetValue(command, out var existing)) { CommandChecks.AddOrUpdate(command, v => { existing(v); check(v); }); }
        else CommandChecks.Add(command, check);
    }

    internal static Action<Values>? CheckOf(Command c) => CommandChecks.TryGetValue(c, out var a) ? a : null;

    /// <summary>Attaches rules, descriptions, defaults, examples and the command checks to the tree.</summary>
    public static RootCommand Apply(RootCommand root)
    {
        var maxMemory = new Option<string?>(MaxMemoryName)
        {
            Description = "Memory WhaleTech may use (e.g. 8GiB); every command checks its estimate against it before starting. Default: MemAvailable of /proc/meminfo, or WHALETECH_MAX_MEMORY.",
            Recursive = true,
        };
        root.Options.Add(maxMemory);
        Attach(maxMemory, Common[MaxMemoryName], MaxMemoryName);
        var missing = new List<string>();
        foreach (var command in Walk(root))
        {
            if (command is RootCommand) continue;
            var path = PathOf(command);
            foreach (var o in command.Options)
            {
                if (o is System.CommandLine.Help.HelpOption || o.Name is "--version") continue;
                var key = path + " " + o.Name;
                var rule = ByCommand.GetValueOrDefault(key)
                           ?? (path.StartsWith("grpo ", StringComparison.Ordinal) ? Grpo.GetValueOrDefault(o.Name) : null)
                           ?? Common.GetValueOrDefault(o.Name);
                if (rule is null) { missing.Add($"whale {path} {o.Name}"); continue; }
                if (string.IsNullOrWhiteSpace(o.Description) && Descriptions.TryGetValue(key, out var d)) o.Description = d;
                Attach(o, rule, key);
            }
            foreach (var a in command.Arguments)
            {
                var key = path + " " + a.Name;
                var rule = ByCommand.GetValueOrDefault(key);
                if (rule is null) { missing.Add($"whale {path} <{a.Name}>"); continue; }
                Attached.AddOrUpdate(a, rule);
                a.Description = $"{a.Description} Allowed: {rule.Allowed}.".Trim();
            }
            if (Examples.TryGetValue(path, out var example)) command.Description += $"\n\nExample:\n  {example}";
            if (CommandCheck(path) is { } check) AddCheck(command, check);
        }
        if (missing.Count > 0)
            throw new InvalidOperationException("options without a validation rule (add them to src/WhaleTech.Cli/Validation/Rules.cs): " + string.Join(", ", missing));
        return root;
    }

    static void Attach(Option o, OptionRule rule, string key)
    {
        Attached.AddOrUpdate(o, rule);
        var text = (o.Description ?? "").Trim();
        if (rule.Kind == ValueKind.Flag)
        {
            bool on = o.HasDefaultValue && o.GetDefaultValue() is true;
            text += on ? $" Default: on; turn it off with {o.Name} false." : $" Default: off ({o.Name} or {o.Name} true turns it on).";
        }
        else
        {
            text += $" Allowed: {rule.Allowed}.";
            if (!o.HasDefaultValue && !o.Required) text += " Optional.";
        }
        o.Description = text.Trim();
        _ = key;
    }

    public static IEnumerable<Command> Walk(Command c)
    {
        yield return c;
        foreach (var s in c.Subcommands)
            foreach (var x in Walk(s)) yield return x;
    }

    // ---- value checks shared by several options ----------------------------------------------------

    static readonly CharTokenizer Tokenizer = new();

    static void Prompts(string name, string[] prompts)
    {
        if (prompts.Length == 0) throw new WhaleArgumentException(name, "", "must give at least one prompt");
        if (prompts.Length > 4096) throw new WhaleArgumentException(name, $"{prompts.Length} prompts", "must be at most 4096 prompts");
        foreach (var p in prompts)
        {
            if (p.Length > 4096) throw new WhaleArgumentException(name, $"a prompt of {p.Length} characters", "must be at most 4096 characters");
            var lower = p.ToLowerInvariant();
            int bad = lower.IndexOf(lower.FirstOrDefault(c => !Tokenizer.CanEncode(c.ToString())));
            if (!Tokenizer.CanEncode(lower))
                throw new WhaleArgumentException(name, p.Length <= 40 ? p : p[..40] + "…", $"must use the tokenizer's characters (a-z, 0-9, space, + - * / = ( ) < > . , ; : ? ! '); character {Describe(lower[bad])} at position {bad + 1} is not one");
        }
    }

    internal static string Describe(char c) => char.IsControl(c) || char.IsWhiteSpace(c) ? $"U+{(int)c:X4}" : $"'{c}' (U+{(int)c:X4})";

    static void KvModel(string name, string value)
    {
        if (ModelPresets.Names.Contains(value.Trim().ToLowerInvariant())) return;
        if (Directory.Exists(value)) throw new WhaleArgumentException(name, value, "must be a preset name or a config.json file, not a folder");
        if (!File.Exists(value)) throw new WhaleArgumentException(name, value, "must be " + string.Join(", ", ModelPresets.Names) + ", or an existing config.json");
    }

    /// <summary>"1,5,6" → ids; empty entries, signs and non-integers are errors.</summary>
    public static int[] Ids(string name, string text)
    {
        var parts = text.Split(',');
        var ids = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
            if (!int.TryParse(parts[i].Trim(), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out ids[i]))
                throw new WhaleArgumentException(name, text, $"must be comma-separated non-negative integers (entry {i + 1} is '{parts[i]}')");
        return ids;
    }

    // ---- per-command checks: cross-option constraints and memory estimates ---------------------------

    static Action<Values>? CommandCheck(string path) => path switch
    {
        "train lm" => v =>
        {
            var cfg = Tiny(v.Str("--attention"), v.Int("--hidden"), v.Int("--layers"), v.Int("--heads"));
            double moments = v.Str("--optimizer-moments") == "bf16" ? 2 : 4;
            ModelMemory.ForTraining(cfg, v.Int("--batch"), v.Int("--seq-len"), moments).EnsureFits("--hidden/--layers/--batch/--seq-len");
            if (v.Get<string?>("--text") is { } text) TextFile("--text", text, v.Int("--seq-len"));
        },
        "mtp train" => v =>
        {
            var cfg = Tiny(v.Str("--attention"), v.Int("--hidden"), v.Int("--layers"), v.Int("--heads")) with { NumNextnPredictLayers = v.Int("--depth") };
            ModelMemory.ForTraining(cfg, v.Int("--batch"), v.Int("--seq-len")).EnsureFits("--hidden/--layers/--depth/--batch/--seq-len");
        },
        "fp8 train" => v =>
        {
            var cfg = Tiny("mla", v.Int("--hidden"), v.Int("--layers"), 4);
            ModelMemory.ForTraining(cfg, v.Int("--batch"), v.Int("--seq-len")).Add("FP8 copies", ModelMemory.Parameters(cfg) * 4).EnsureFits("--hidden/--layers/--batch/--seq-len");
        },
        "moe experiment" => v =>
        {
            if (v.Int("--top-k") > v.Int("--experts")) throw new WhaleArgumentException("--top-k", v.Int("--top-k"), $"must be ≤ --experts = {v.Int("--experts")}");
            var cfg = Tiny("mla", v.Int("--hidden"), v.Int("--layers"), 4) with
            {
                NRoutedExperts = v.Int("--experts"), NumExpertsPerTok = v.Int("--top-k"), NSharedExperts = v.Int("--shared"), MoeIntermediateSize = v.Int("--expert-width"),
            };
            ModelMemory.ForTraining(cfg, v.Int("--batch-size"), v.Int("--seq-len")).EnsureFits("--hidden/--layers/--experts/--expert-width/--batch-size/--seq-len");
        },
        "mla bench" => v =>
        {
            var shapes = Cli.ParseShapes(v.Str("--shapes"));
            double perToken = (double)shapes.Heads * (shapes.NopeDim + shapes.RopeDim + shapes.VDim);   // MHA materialized, the largest cache
            double batch = v.Get<long[]?>("--batch") is { Length: > 0 } b ? b.Max() : 4, context = v.Get<long[]?>("--context") is { Length: > 0 } c ? c.Max() : 1024;
            double budget = DecodeGrid.CpuDefault.MemoryBudgetGiB * (1L << 30);      // points whose caches exceed it are skipped
            new MemoryEstimate().Add("KV caches (largest point, MHA; points over the grid's budget are skipped)", Math.Min(batch * context * perToken * 4 * 2, budget))
                .Add("copy-bandwidth buffers", 2 * (256 << 20))
                .EnsureFits("--batch/--context");
        },
        "fp8 lab" => v =>
        {
            long rows = v.Get<long>("--rows"), cols = v.Get<long>("--cols");
            if (v.Int("--outliers") > Math.Min(rows, cols)) throw new WhaleArgumentException("--outliers", v.Int("--outliers"), $"must be ≤ min(--rows, --cols) = {Math.Min(rows, cols)}");
            MemoryEstimate.ForTensors("tensor and its FP8 copies", (double)rows * cols, 4, temporaries: 12).EnsureFits("--rows/--cols");
        },
        "fp8 sweep" => v =>
        {
            long start = v.Get<long>("--start"), count = v.Get<long>("--count");
            if (count != (1L << 32) && start + count > 1L << 32) throw new WhaleArgumentException("--count", count, $"must be ≤ 2^32 − --start = {(1L << 32) - start}");
            MemoryEstimate.ForTensors("one chunk of patterns × 4 casts", v.Int("--chunk"), 4, temporaries: 16).EnsureFits("--chunk");
        },
        "fp8 accum" => v =>
        {
            var ks = v.Str("--k").Split(',').Select(s => double.Parse(s, System.Globalization.CultureInfo.InvariantCulture));
            MemoryEstimate.ForTensors("16×K and K×16 operands", 32 * ks.Max(), 8, temporaries: 8).EnsureFits("--k");
        },
        "fp8 analyze" => v =>
        {
            var path = v.Str("model");
            new MemoryEstimate().Add("the file and its FP8 copies", new FileInfo(path).Length * 6.0).EnsureFits("model");
        },
        "kv" => v =>
        {
            if (v.Get<bool>("--paper")) return;
            var cfg = v.Library(() => ModelPresets.Resolve(v.Str("--model")));
            _ = cfg;
        },
        "generate" or "mtp speculate" => v =>
        {
            var cfg = v.Library(() => ModelConfig.Load(Path.Combine(v.Str("--model"), "config.json")));
            int batch = path == "generate" ? v.Get<string[]>("--prompt").Length : v.Int("--batch-size");
            int newTokens = path == "generate" ? v.Int("--max-new-tokens") : v.Int("--new-tokens");
            int prompt = v.Get<string[]>("--prompt").Max(p => p.Length) + 1;
            if (prompt + newTokens > cfg.MaxPositionEmbeddings)
                throw new WhaleArgumentException(path == "generate" ? "--max-new-tokens" : "--new-tokens", newTokens,
                    $"must keep prompt + new tokens ≤ the model's max_position_embeddings = {cfg.MaxPositionEmbeddings} (longest prompt: {prompt} tokens)");
            ModelMemory.ForInference(cfg, batch, prompt + newTokens).EnsureFits((path == "generate" ? "--model/--prompt/--max-new-tokens" : "--model/--batch-size/--new-tokens") + " (" + ModelMemory.Sizes(cfg) + ")");
        },
        "checkpoint generate" => v =>
        {
            var cfg = v.Library(() => WhaleTech.Hub.HubConfig.Load(v.Str("folder")));
            var prompts = v.Get<string[]>("--ids").Select(s => Ids("--ids", s)).ToArray();
            foreach (var p in prompts)
            {
                if (p.Length == 0) throw new WhaleArgumentException("--ids", "", "must hold at least one token id");
                if (p.FirstOrDefault(id => id >= cfg.VocabSize) is var bad && p.Any(id => id >= cfg.VocabSize))
                    throw new WhaleArgumentException("--ids", bad, $"must be token ids < vocab_size = {cfg.VocabSize}");
            }
            int longest = prompts.Max(p => p.Length) + v.Int("--max-new-tokens");
            ModelMemory.ForInference(cfg, prompts.Length, longest).EnsureFits("folder/--ids/--max-new-tokens (" + ModelMemory.Sizes(cfg) + ")");
        },
        "checkpoint inspect" or "checkpoint convert" or "checkpoint parity" => v =>
        {
            var folder = v.Str(path == "checkpoint convert" ? "from" : "folder");
            var cfg = v.Library(() => WhaleTech.Hub.HubConfig.Load(folder));
            if (path == "checkpoint parity" && !File.Exists(Path.Combine(folder, WhaleTech.Hub.HubParity.ReferenceFile)))
                throw new WhaleArgumentException("folder", folder, $"must hold {WhaleTech.Hub.HubParity.ReferenceFile} (tools/hf/make_fixtures.py or `whale checkpoint export-parity`)");
            if (path == "checkpoint inspect") ModelMemory.ForModel(WhaleTech.Hub.HubInspection.Skeleton(cfg)).EnsureFits("folder (" + ModelMemory.Sizes(cfg) + ")");
            else ModelMemory.ForInference(cfg, 2, 64).EnsureFits("folder (" + ModelMemory.Sizes(cfg) + ")");
        },
        _ => null,
    };

    /// <summary>ModelConfig.Tiny with its coupling of --hidden and --heads checked first, naming both options.</summary>
    static ModelConfig Tiny(string attention, int hidden, int layers, int heads)
    {
        if (hidden % heads != 0 || (hidden / heads) % 4 != 0)
            throw new WhaleArgumentException(heads == 4 && attention == "mla" ? "--hidden" : "--hidden/--heads", $"{hidden}/{heads}",
                $"--hidden must be a multiple of 4 × --heads (each head gets --hidden / --heads dimensions, a multiple of 4 for RoPE's pairs); e.g. --hidden {Math.Max(4 * heads, (hidden + 4 * heads - 1) / (4 * heads) * 4 * heads)}");
        return ModelConfig.Tiny(attention, vocab: Tokenizer.VocabSize, hidden: hidden, layers: layers, heads: heads);
    }

    /// <summary>GRPO's memory: the policy (and a reference copy when β > 0) trained on SFT batches, then on P × G rollouts.</summary>
    public static void GrpoMemory(WhaleTech.Grpo.GrpoOptions o, bool grpo)
    {
        WhaleTech.Grpo.Rewards.Parse(o.Rewards, o.CreateTask());
        Tiny(o.Policy.Attention, o.Policy.Hidden, o.Policy.Layers, o.Policy.Heads);
        var cfg = WhaleTech.Grpo.PolicyModel.Config(o);
        var sft = ModelMemory.ForTraining(cfg, o.SftBatch, 64, o.OptimizerMoments == WhaleTech.Training.MomentPrecision.Bf16 ? 2 : 4);
        sft.EnsureFits("--hidden/--layers/--heads/--moe-experts/--sft-batch");
        if (!grpo) return;
        var rl = ModelMemory.ForTraining(cfg, (double)o.PromptsPerStep * o.NumGenerations, 128);
        if (o.Beta > 0) rl.Add("reference model", ModelMemory.Parameters(cfg) * 4);
        rl.EnsureFits("--hidden/--layers/--heads/--prompts-per-step/--num-generations");
    }

    /// <summary>--text: a readable UTF-8 file of the tokenizer's characters, long enough for the windows. Never echoes the contents.</summary>
    static void TextFile(string name, string path, int seqLen)
    {
        var info = new FileInfo(path);
        if (info.Length > 256L << 20) throw new WhaleArgumentException(name, path, $"must be a text file of at most 256 MiB (this one has {MemoryBudget.Format(info.Length)})");
        string text;
        try { text = File.ReadAllText(path, new System.Text.UTF8Encoding(false, true)).ToLowerInvariant(); }
        catch (System.Text.DecoderFallbackException) { throw new WhaleArgumentException(name, path, "must be UTF-8 text (it holds bytes that are not UTF-8)"); }
        for (int i = 0, line = 1, col = 1; i < text.Length; i++, col++)
        {
            char c = text[i];
            if (!Tokenizer.CanEncode(c.ToString()))
                throw new WhaleArgumentException(name, path, $"must use only the tokenizer's characters (a-z, 0-9, space, newline, + - * / = ( ) < > . , ; : ? ! '); line {line}, column {col} holds {Describe(c)}");
            if (c == '\n') { line++; col = 0; }
        }
        long needed = (seqLen + 2L) * 10;
        if (text.Length < needed) throw new WhaleArgumentException(name, path, $"must hold at least {needed} characters for --seq-len {seqLen} (10% is held out for evaluation); it has {text.Length}");
    }
}

/// <summary>Typed access to a parsed command's values by name, for the command checks.</summary>
public sealed class Values(ParseResult parse, Command command)
{
    public ParseResult Parse { get; } = parse;
    public Command Command { get; } = command;
    public T Get<T>(string name) => Parse.GetValue<T>(name)!;
    public int Int(string name) => Get<int>(name);
    public string Str(string name) => Get<string>(name);

    /// <summary>Runs a library call; its WhaleArgumentException is mapped to this command's options by Preflight.</summary>
    public T Library<T>(Func<T> f) => f();
}
