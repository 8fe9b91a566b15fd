// `whale grpo train --config run.json`: a GRPO run's configuration as a JSON object whose keys are GrpoOptions'
// JSON names — TRL GRPOConfig's field names where TRL has the field (num_generations, max_completion_length,
// learning_rate, lr_scheduler_type, temperature, top_p, top_k, beta, epsilon, epsilon_high, loss_type,
// scale_rewards, num_iterations, mask_truncated_completions, ref_model_sync_steps, max_grad_norm, warmup_steps,
// seed), WhaleTech's own names for the rest (task knobs, policy shape, SFT warm start). Keys left out keep their
// defaults; an unknown key is an error (a typo must not silently fall back to a default). The resolved
// configuration — every field, defaults included — is what a run writes to <out>/options.json, so that file
// is itself a config: `--config runs/x/options.json` repeats run x (GrpoConfigTests: same metrics).
using System.Text.Json;
using System.Text.Json.Serialization;
using WhaleTech.Runtime;

namespace WhaleTech.Grpo;

public static class GrpoConfigFile
{
    static readonly JsonSerializerOptions Strict = new(GrpoCheckpoint.Json) { UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow };

    /// <summary>Reads a config file (not validated: CLI flags may still change it).</summary>
    public static GrpoOptions Read(string path)
    {
        Guard.ExistingFile("--config", path);
        try { return JsonSerializer.Deserialize<GrpoOptions>(File.ReadAllText(path), Strict) ?? throw new WhaleFormatException(path, "holds null"); }
        catch (JsonException e) { throw new WhaleFormatException(path, "not a GRPO config (" + e.Message + ")", e); }
    }

    /// <summary>The resolved configuration as indented JSON, every field included.</summary>
    public static string ToJson(GrpoOptions o) => JsonSerializer.Serialize(o, GrpoCheckpoint.Json);
}
