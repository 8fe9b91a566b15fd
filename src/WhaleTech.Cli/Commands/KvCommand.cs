// `whale kv`: KV-cache accounting (DeepSeek-V2 Table 1) for a built-in model or any config.json —
// elements and bytes per token per layer, per token for the model, the cache at batch × context, and the
// largest context that fits a memory budget, for MHA, GQA-n, MQA, MLA materialized and MLA latent.
// `whale kv --paper` recomputes DeepSeek-V2's Table 9 and its 93.3% headline.
using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Serialization;
using Spectre.Console;
using WhaleTech.Attention;
using WhaleTech.Model;
using WhaleTech.Runtime;
using WhaleTech.Core;
using WhaleTech.Lab.Mla;

namespace WhaleTech.Cli.Commands;

public static class KvCommand
{
    public static Command Build()
    {
        var model = new Option<string>("--model") { Description = "deepseek-v3, deepseek-v2, deepseek-v2-lite, deepseek-67b, llama3-70b, or a path to a config.json.", DefaultValueFactory = _ => "deepseek-v3" };
        var batch = new Option<long>("--batch") { Description = "Sequences in the batch.", DefaultValueFactory = _ => 1 };
        var context = new Option<long>("--context") { Description = "Tokens per sequence (prompt + generated).", DefaultValueFactory = _ => 32768 };
        var budget = new Option<double>("--budget-gib") { Description = "Memory budget for the KV cache alone, GiB (for the largest context).", DefaultValueFactory = _ => 80 };
        var dtype = new Option<string>("--dtype") { Description = "Cache element type: bf16, fp16, fp32 or fp8.", DefaultValueFactory = _ => "bf16" };
        var kvHeads = new Option<int?>("--gqa-kv-heads") { Description = "n_g of the GQA row (default: the model's own for GQA models, else 8)." };
        var paper = new Option<bool>("--paper") { Description = "Recompute DeepSeek-V2 Table 9 and the 93.3% headline instead." };
        var json = new Option<bool>("--json") { Description = "Print JSON instead of a table." };
        var cmd = new Command("kv", "KV-cache bytes per token, cache size and largest context for MHA, GQA, MQA and MLA (DeepSeek-V2 Table 1).")
            { model, batch, context, budget, dtype, kvHeads, paper, json };
        cmd.SetAction(parse =>
        {
            var output = parse.InvocationConfiguration.Output;
            if (parse.GetValue(paper)) { WritePaper(output, parse.GetValue(json)); return 0; }
            var report = Report(parse.GetValue(model)!, parse.GetValue(batch), parse.GetValue(context), parse.GetValue(budget), parse.GetValue(dtype)!, parse.GetValue(kvHeads));
            if (parse.GetValue(json)) output.WriteLine(JsonSerializer.Serialize(report, JsonOptions));
            else WriteTable(output, report);
            return 0;
        });
        return cmd;
    }

    static readonly JsonSerializerOptions JsonOptions = new() { WriteIndented = true, Converters = { new JsonStringEnumConverter() } };

    public sealed record KvReport(
        [property: JsonPropertyName("model")] string Model,
        [property: JsonPropertyName("layers")] int Layers,
        [property: JsonPropertyName("shape")] KvShape Shape,
        [property: JsonPropertyName("dtype")] string Dtype,
        [property: JsonPropertyName("bytes_per_element")] double BytesPerElement,
        [property: JsonPropertyName("batch")] long Batch,
        [property: JsonPropertyName("context")] long Context,
        [property: JsonPropertyName("budget_gib")] double BudgetGiB,
        [property: JsonPropertyName("rows")] IReadOnlyList<KvJsonRow> Rows);

    public sealed record KvJsonRow(
        [property: JsonPropertyName("attention")] string Attention,
        [property: JsonPropertyName("formula")] string Formula,
        [property: JsonPropertyName("elements_per_token_per_layer")] long ElementsPerTokenPerLayer,
        [property: JsonPropertyName("bytes_per_token_per_layer")] double BytesPerTokenPerLayer,
        [property: JsonPropertyName("elements_per_token")] long ElementsPerToken,
        [property: JsonPropertyName("bytes_per_token")] double BytesPerToken,
        [property: JsonPropertyName("cache_bytes")] double CacheBytes,
        [property: JsonPropertyName("max_context")] long MaxContext);

    /// <summary>The accounting behind `whale kv` (also what --json prints).</summary>
    public static KvReport Report(string model, long batch, long context, double budgetGiB, string dtype, int? gqaKvHeads = null)
    {
        Guard.Positive("--batch", batch);
        Guard.Positive("--context", context);
        Guard.Positive("--budget-gib", budgetGiB);
        double bpe = KvAccounting.BytesPerElement(dtype);
        var cfg = ModelPresets.Resolve(model);
        var shape = KvShape.From(cfg, gqaKvHeads);
        var rows = KvAccounting.Table(shape, dtype, batch, context, budgetGiB * (1L << 30))
            .Select(r => new KvJsonRow(r.Attention, r.Formula, r.ElementsPerTokenPerLayer, r.BytesPerTokenPerLayer, r.ElementsPerToken, r.BytesPerToken, r.CacheBytes, r.MaxContext))
            .ToList();
        return new KvReport(model, shape.Layers, shape, dtype.ToLowerInvariant(), bpe, batch, context, budgetGiB, rows);
    }

    /// <summary>A Spectre console on <paramref name="output"/>: the terminal as is, or plain wide text for a captured writer.</summary>
    internal static IAnsiConsole Console(TextWriter output)
    {
        if (ReferenceEquals(output, System.Console.Out)) return AnsiConsole.Console;
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(output), Ansi = AnsiSupport.No, ColorSystem = ColorSystemSupport.NoColors });
        console.Profile.Width = 200;
        return console;
    }

    static void WriteTable(TextWriter output, KvReport r)
    {
        var table = new Table().Title($"KV cache of {Markup.Escape(r.Model)}: {r.Layers} layers, {r.Dtype}, batch {r.Batch} × context {r.Context}")
            .AddColumn("attention").AddColumn(new TableColumn("elem/tok/layer").RightAligned())
            .AddColumn(new TableColumn("B/tok/layer").RightAligned()).AddColumn(new TableColumn("KiB/token").RightAligned())
            .AddColumn(new TableColumn("cache GiB").RightAligned()).AddColumn(new TableColumn($"max ctx @{r.BudgetGiB}GiB").RightAligned());
        foreach (var row in r.Rows)
            table.AddRow(row.Attention, $"{row.ElementsPerTokenPerLayer:N0}", $"{row.BytesPerTokenPerLayer:N0}",
                $"{row.BytesPerToken / 1024:N1}", $"{row.CacheBytes / (1L << 30):N2}", $"{row.MaxContext:N0}");
        table.Caption("per token per layer (DeepSeek-V2 Table 1): " + Markup.Escape(string.Join("; ", r.Rows.Select(x => $"{x.Attention} {x.Formula}"))));
        Console(output).Write(table);
    }

    static void WritePaper(TextWriter output, bool json)
    {
        var cells = DeepSeekV2KvPaper.Table9();
        var (dense, v2) = DeepSeekV2KvPaper.HeadlineElements();
        double arch = DeepSeekV2KvPaper.HeadlineReduction(16), quantized = DeepSeekV2KvPaper.HeadlineReduction(6);
        if (json)
        {
            output.WriteLine(JsonSerializer.Serialize(new
            {
                table9 = cells.Select(c => new { model = c.Model, attention = c.Attention, how = c.How, elements = c.Elements, paper_thousands = c.PaperThousands }),
                headline = new { deepseek_67b_elements = dense, deepseek_v2_elements = v2, architecture_reduction = arch, with_6bit_kv_reduction = quantized },
            }, JsonOptions));
            return;
        }
        var table = new Table().Title("DeepSeek-V2 Table 9: KV cache per token (# elements, all layers)")
            .AddColumn("model").AddColumn("attention").AddColumn("l · per layer").AddColumn(new TableColumn("elements").RightAligned()).AddColumn(new TableColumn("paper").RightAligned());
        foreach (var c in cells) table.AddRow(c.Model, c.Attention, c.How, $"{c.Elements:N0}", $"{c.PaperThousands}K");
        var console = Console(output);
        console.Write(table);
        console.WriteLine($"DeepSeek 67B (95 layers, GQA 8 × 128): {dense:N0} elements/token; DeepSeek-V2 (60 × 576): {v2:N0}.");
        console.WriteLine($"Architecture alone: 1 − {v2:N0}/{dense:N0} = {arch:P1}; with ~6-bit KV elements vs 16-bit: {quantized:P1} (the paper's 93.3%).");
    }
}
