// Saving a DeepSeekLM as a Hugging Face checkpoint folder that transformers loads (DeepseekV3ForCausalLM, or
// DeepseekV2ForCausalLM for V2 routing — HubConfig.ForTransformers):
//   config.json
//   model.safetensors                                  when everything fits in one shard, else
//   model-00001-of-0000N.safetensors … + model.safetensors.index.json
//       {"metadata": {"total_size": <bytes of all tensors>}, "weight_map": {name: shard}}   (as transformers writes it)
// Optionally in DeepSeek-V3's shipped FP8 format (DeepSeek-V3 report §3.3.2 "fine-grained quantization"): every
// 2-D projection inside the decoder layers as F8_E4M3 with `<name>_scale_inv` [ceil(O/b), ceil(I/b)] F32, where
//     s = amax(|W| over the b×b block) / 448,   W_fp8 = round_e4m3(W / s),   W ≈ W_fp8 × s   (scale_inv = s)
// and quantization_config in config.json; embeddings, lm_head, norms and the router stay in the model's dtype.
//
// Atomic: everything is written into a temporary sibling folder, then swapped in (old → .old, new → folder,
// drop .old); a crash leaves either the previous folder or the new one, never a half-written mix. Files in an
// existing folder that are not weights or config (tokenizer.json, README.md, …) are carried over.
//
// Shapes: O out features, I in features, b block size (128).
using System.Text.Json;
using TorchSharp;
using WhaleTech.Model;
using WhaleTech.Runtime;
using static TorchSharp.torch;

using WhaleTech.IO;

namespace WhaleTech.Hub;

/// <summary>What a save wrote.</summary>
public sealed record HubSaveReport(string Folder, IReadOnlyList<string> Files, int Tensors, long TotalBytes, int Fp8Weights, IReadOnlyList<string> TransformersCaveats);

public static partial class HubCheckpoint
{
    /// <summary>transformers' default max_shard_size ("5GB" = 5·10⁹ bytes).</summary>
    public const long DefaultMaxShardBytes = 5_000_000_000;

    /// <summary>Saves <paramref name="model"/> to <paramref name="folder"/> (see the file header).</summary>
    /// <param name="maxShardBytes">Largest shard; a single tensor larger than this gets a shard of its own.</param>
    /// <param name="fp8">Write decoder projections as block-scaled FP8 (E4M3) the way DeepSeek-V3 ships.</param>
    public static HubSaveReport Save(DeepSeekLM model, string folder, long maxShardBytes = DefaultMaxShardBytes, bool fp8 = false, int fp8BlockSize = Fp8BlockDequant.BlockSize)
    {
        ArgumentNullException.ThrowIfNull(model);
        Guard.Positive("maxShardBytes", maxShardBytes);
        Guard.Positive("fp8BlockSize", fp8BlockSize);
        var full = Path.GetFullPath(folder.TrimEnd(Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar));
        if (File.Exists(full)) throw new WhaleArgumentException("folder", folder, "must be a folder path, not a file");
        var entries = StateDict.Entries(model);
        var dtype = model.Embedding.weight!.dtype;
        using var scope = torch.NewDisposeScope();

        // 1. The tensors to write, in module order (an FP8 weight is followed by its scale).
        var tensors = new List<(string Name, Tensor Tensor)>();
        int fp8Count = 0;
        using (torch.no_grad())
        {
            foreach (var (name, t) in entries)
            {
                var cpu = t.detach().cpu();
                if (fp8 && IsFp8Eligible(name, cpu))
                {
                    var (q, scaleInv) = QuantizeFp8(cpu, fp8BlockSize);
                    tensors.Add((name, q));
                    tensors.Add((name + Fp8BlockDequant.ScaleSuffix, scaleInv));
                    fp8Count++;
                }
                else tensors.Add((name, cpu));
            }
        }

        // 2. Shards: greedy in order, like transformers' split_torch_state_dict_into_shards.
        var shards = new List<List<(string Name, Tensor Tensor)>> { new() };
        long current = 0, total = 0;
        foreach (var item in tensors)
        {
            long bytes = item.Tensor.numel() * item.Tensor.ElementSize;
            if (current + bytes > maxShardBytes && shards[^1].Count > 0) { shards.Add([]); current = 0; }
            shards[^1].Add(item);
            current += bytes;
            total += bytes;
        }

        // 3. Write into a temporary sibling folder, then swap it in.
        var parent = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(parent);
        var tmp = Path.Combine(parent, "." + Path.GetFileName(full) + "." + Guid.NewGuid().ToString("N")[..8] + ".tmp");
        var files = new List<string>();
        try
        {
            Directory.CreateDirectory(tmp);
            var metadata = new Dictionary<string, string> { ["format"] = "pt" };
            if (shards.Count == 1)
            {
                SafeTensorsWriter.Write(Path.Combine(tmp, CheckpointReader.SingleFileName), shards[0], metadata);
                files.Add(CheckpointReader.SingleFileName);
            }
            else
            {
                var weightMap = new SortedDictionary<string, string>(StringComparer.Ordinal);
                for (int i = 0; i < shards.Count; i++)
                {
                    var file = $"model-{i + 1:D5}-of-{shards.Count:D5}.safetensors";
                    SafeTensorsWriter.Write(Path.Combine(tmp, file), shards[i], metadata);
                    foreach (var (n, _) in shards[i]) weightMap[n] = file;
                    files.Add(file);
                }
                var index = new { metadata = new { total_size = total }, weight_map = weightMap };
                AtomicFile.WriteAllText(Path.Combine(tmp, CheckpointReader.IndexFileName),
                    JsonSerializer.Serialize(index, new JsonSerializerOptions { WriteIndented = true }) + "\n");
                files.Add(CheckpointReader.IndexFileName);
            }
            HubConfig.ForTransformers(model.Config, dtype, fp8 ? fp8BlockSize : null).Save(Path.Combine(tmp, HubConfig.FileName));
            files.Add(HubConfig.FileName);
            CarryOverOtherFiles(full, tmp);
            SwapIn(tmp, full);
        }
        finally
        {
            if (Directory.Exists(tmp)) Directory.Delete(tmp, true);
        }
        return new HubSaveReport(full, files, tensors.Count, total, fp8Count, HubConfig.TransformersCaveats(model.Config));
    }

    /// <summary>True for the weights DeepSeek-V3 ships in FP8: 2-D projections inside the decoder layers, not the router,
    /// and not an MTP layer's copies of the embedding and output head (they must stay equal to the shared tensors).</summary>
    public static bool IsFp8Eligible(string name, Tensor t)
        => t.dim() == 2 && name.StartsWith("model.layers.", StringComparison.Ordinal) && name.EndsWith(".weight", StringComparison.Ordinal)
           && !name.EndsWith(".mlp.gate.weight", StringComparison.Ordinal)
           && !name.EndsWith(".embed_tokens.weight", StringComparison.Ordinal) && !name.EndsWith(".shared_head.head.weight", StringComparison.Ordinal)
           && torch.is_floating_point(t);

    /// <summary>Block-scaled FP8 (E4M3) quantization of W [O, I]: (W_fp8 [O, I], scale_inv [ceil(O/b), ceil(I/b)] fp32).</summary>
    public static (Tensor Weight, Tensor ScaleInv) QuantizeFp8(Tensor weight, int blockSize = Fp8BlockDequant.BlockSize)
    {
        var shape = Fp8BlockDequant.ScaleShape(weight.shape, blockSize);
        long o = weight.shape[0], i = weight.shape[1], bo = shape[0], bi = shape[1];
        using var scope = torch.NewDisposeScope();
        var w = weight.to_type(ScalarType.Float32);
        var padded = nn.functional.pad(w, [0, bi * blockSize - i, 0, bo * blockSize - o]);            // [Bo·b, Bi·b]
        var amax = padded.view(bo, blockSize, bi, blockSize).abs().amax([1, 3]);                     // [Bo, Bi]
        var scale = (amax / 448.0).clamp_min(1e-12);                                                 // [Bo, Bi]
        var full = scale.repeat_interleave(blockSize, 0).repeat_interleave(blockSize, 1).narrow(0, 0, o).narrow(1, 0, i); // [O, I]
        var q = (w / full).clamp(-448.0, 448.0).to_type(SafeTensorsDTypes.Float8E4M3);              // [O, I] e4m3
        return (q.MoveToOuterDisposeScope(), scale.MoveToOuterDisposeScope());
    }

    static bool IsWeightOrConfig(string fileName) =>
        fileName == HubConfig.FileName || fileName == CheckpointReader.IndexFileName ||
        (fileName.StartsWith("model", StringComparison.Ordinal) && fileName.EndsWith(".safetensors", StringComparison.Ordinal));

    static void CarryOverOtherFiles(string from, string to)
    {
        if (!Directory.Exists(from)) return;
        foreach (var file in Directory.GetFiles(from))
        {
            var name = Path.GetFileName(file);
            if (!IsWeightOrConfig(name) && !name.StartsWith('.')) File.Copy(file, Path.Combine(to, name));
        }
        foreach (var dir in Directory.GetDirectories(from))
            throw new WhaleArgumentException("folder", from, $"holds a subfolder ({Path.GetFileName(dir)}); save into an empty folder or a checkpoint folder without subfolders");
    }

    /// <summary>Replaces <paramref name="target"/> by <paramref name="tmp"/>: old → .old, new → target, drop .old.</summary>
    static void SwapIn(string tmp, string target)
    {
        var old = target + ".old";
        if (Directory.Exists(old)) Directory.Delete(old, true);
        if (Directory.Exists(target)) Directory.Move(target, old);
        Directory.Move(tmp, target);
        if (Directory.Exists(old)) Directory.Delete(old, true);
    }
}
