// `whale generate`: batched sampling from a saved model (config.json + model.safetensors).
using System.CommandLine;
using Spectre.Console;
using TorchSharp;
using WhaleTech.Hub;
using WhaleTech.Attention;
using WhaleTech.IO;
using WhaleTech.Model;
using WhaleTech.Runtime;
using WhaleTech.Core;

namespace WhaleTech.Cli.Commands;

public static class GenerateCommand
{
    public static Command Build()
    {
        var device = Cli.DeviceOption();
        var model = new Option<string>("--model") { Description = "Folder with config.json + model.safetensors (from `whale train lm`).", DefaultValueFactory = _ => "runs/tiny-lm" };
        var prompts = new Option<string[]>("--prompt") { Description = "Prompt text; repeat for a batch of prompts of different lengths.", AllowMultipleArgumentsPerToken = true, DefaultValueFactory = _ => ["the big ", "17+25="] };
        var maxNew = new Option<int>("--max-new-tokens") { Description = "Tokens to generate per prompt.", DefaultValueFactory = _ => 32 };
        var temperature = new Option<double>("--temperature") { Description = "0 = greedy.", DefaultValueFactory = _ => 0.0 };
        var topK = new Option<int>("--top-k") { Description = "Keep the k most likely tokens (0 = off).", DefaultValueFactory = _ => 0 };
        var topP = new Option<double>("--top-p") { Description = "Nucleus sampling mass (1 = off).", DefaultValueFactory = _ => 1.0 };
        var seed = new Option<int>("--seed") { Description = "Sampling seed.", DefaultValueFactory = _ => 1 };
        var mla = new Option<string>("--mla-mode") { Description = "MLA inference path: auto, naive or absorbed.", DefaultValueFactory = _ => "auto" };
        var cmd = new Command("generate", "Generate text from a saved model with the KV cache (batched, greedy or sampled).")
        { device, model, prompts, maxNew, temperature, topK, topP, seed, mla };
        cmd.SetAction(parse =>
        {
            var dev = Backend.ResolveDevice(parse.GetValue(device));
            var dir = parse.GetValue(model)!;
            if (!File.Exists(Path.Combine(dir, "config.json")))
                throw new WhaleArgumentException("--model", dir, "must be a folder with config.json and model.safetensors (train one with `whale train lm`)");
            var mode = Guard.OneOf("--mla-mode", parse.GetValue(mla)!, "auto", "naive", "absorbed");
            var (lm, _) = DeepSeekLM.FromPretrained(dir, device: dev);   // single or sharded, FP8 dequantized (docs/hf-interop.md)
            using var lmScope = lm;
            var cfg = lm.Config;
            lm.SetMlaMode(mode switch { "naive" => MlaMode.Naive, "absorbed" => MlaMode.Absorbed, _ => MlaMode.Auto });
            var tok = new CharTokenizer();
            if (tok.VocabSize != cfg.VocabSize)
                throw new WhaleArgumentException("--model", dir, $"must be a character-level WhaleTech model (vocab_size {tok.VocabSize}); this one has {cfg.VocabSize}");
            var texts = parse.GetValue(prompts)!;
            var opts = new SamplingOptions
            {
                MaxNewTokens = parse.GetValue(maxNew), Temperature = parse.GetValue(temperature), TopK = parse.GetValue(topK), TopP = parse.GetValue(topP),
                StopTokens = [tok.IdOf('\n'), CharTokenizer.Eos],
            }.Validate();
            using var gen = new torch.Generator((ulong)parse.GetValue(seed));
            var result = Generation.Generate(lm, texts.Select(t => tok.Encode(t.ToLowerInvariant(), addBos: true)).ToArray(), opts, gen);
            var table = new Table().AddColumn("prompt").AddColumn("completion");
            for (int i = 0; i < texts.Length; i++) table.AddRow(Markup.Escape(texts[i]), Markup.Escape(tok.Decode(result.Completions[i]).TrimEnd('\n')));
            AnsiConsole.Write(table);
            return 0;
        });
        return cmd;
    }
}
