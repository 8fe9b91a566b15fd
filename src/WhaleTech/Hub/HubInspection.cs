// What is in a Hub checkpoint folder, without loading its weights (`whale checkpoint inspect`):
// config summary, parameter count, stored tensors by dtype, FP8 block-scaled weights, MTP layers, and the
// names WhaleTech would find missing or unexpected. Names do not depend on sizes, so the expected names come
// from a skeleton model of the same structure with every width shrunk to a few units: inspecting DeepSeek-V3
// (671B parameters) builds a model of a few hundred thousand.
using WhaleTech.Model;
using static TorchSharp.torch;
using WhaleTech.Core;

using WhaleTech.IO;

namespace WhaleTech.Hub;

public sealed record DTypeSummary(string DType, int Tensors, long Elements, long Bytes);

public sealed record HubInspection(
    string Folder, ModelConfig Config, int Files, bool Sharded, long Parameters, long MtpParameters,
    IReadOnlyList<DTypeSummary> ByDType, int Fp8Weights, int? Fp8BlockSize, IReadOnlyList<int> MtpLayers,
    IReadOnlyList<string> Missing, IReadOnlyList<string> Unexpected, IReadOnlyList<string> TransformersCaveats)
{
    /// <summary>Reads headers and config only.</summary>
    public static HubInspection Of(string folder)
    {
        var config = HubConfig.Load(folder);
        var block = HubConfig.Fp8BlockSize(config, Path.Combine(folder, HubConfig.FileName));
        var reader = CheckpointReader.Open(folder, dequantizeFp8: true, fp8BlockSize: block ?? Fp8BlockDequant.BlockSize);
        var stored = reader.Files.SelectMany(f => f.Tensors).ToList();
        var byDType = stored.GroupBy(t => t.DType.Name())
            .Select(g => new DTypeSummary(g.Key, g.Count(), g.Sum(t => t.ElementCount), g.Sum(t => t.End - t.Begin)))
            .OrderByDescending(s => s.Bytes).ToList();
        int fp8 = stored.Count(t => t.DType is SafeTensorsDType.F8_E4M3 or SafeTensorsDType.F8_E5M2 && reader.Contains(t.Name)
                                    && stored.Any(s => s.Name == t.Name + Fp8BlockDequant.ScaleSuffix));
        var view = HubTensorView.Create(reader, config);
        long Count(string n) => view.Describe(n).Shape.Aggregate(1L, (a, d) => a * d);
        var mtpNames = view.Names.Where(n => HubCheckpoint.MtpLayer(n, config) is not null).ToList();
        var mtpLayers = mtpNames.Select(n => HubCheckpoint.MtpLayer(n, config)!.Value).Distinct().Order().ToList();
        long total = view.Names.Sum(Count), mtp = mtpNames.Sum(Count);

        HashSet<string> expected;
        using (var skeleton = new DeepSeekLM(Skeleton(config)))
            expected = new HashSet<string>(StateDict.Entries(skeleton).Select(e => e.Name), StringComparer.Ordinal);
        var have = new HashSet<string>(view.Names, StringComparer.Ordinal);
        return new HubInspection(reader.Folder, config, reader.Files.Count, reader.IndexMetadata is not null || reader.Files.Count > 1,
            total, mtp, byDType, fp8, block, mtpLayers,
            expected.Where(n => !have.Contains(n)).Order(StringComparer.Ordinal).ToList(),
            view.Names.Where(n => !expected.Contains(n)).ToList(),
            HubConfig.TransformersCaveats(config));
    }

    /// <summary>The same structure (layers, heads, experts, groups, q_lora or not, biases, tying) with tiny widths.</summary>
    public static ModelConfig Skeleton(ModelConfig c) => c with
    {
        VocabSize = 8, HiddenSize = 8, IntermediateSize = 8, MoeIntermediateSize = 4, KvLoraRank = 4,
        QLoraRank = c.QLoraRank is null ? null : 4, QkNopeHeadDim = 2, QkRopeHeadDim = 2, VHeadDim = 2,
        HeadDim = 2, MaxPositionEmbeddings = 8, RopeScaling = null,
    };
}
