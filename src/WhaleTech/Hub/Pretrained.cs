// Hugging Face interop of DeepSeekLM, transformers-style: DeepSeekLM.FromPretrained / model.SavePretrained on a
// checkpoint folder (config.json + safetensors, single or sharded, FP8 block-scaled weights dequantized on load).
// They are extension members of the Hub layer, so the model itself knows nothing of checkpoint folders. The
// work is done by HubCheckpoint (load view, MTP keys, fused experts) and HubCheckpointWriter (shards, index,
// FP8, atomic folder swap); docs/hf-interop.md lists what matches transformers and what not.
using WhaleTech.IO;
using WhaleTech.Model;
using static TorchSharp.torch;

namespace WhaleTech.Hub;

public static class Pretrained
{
    extension(DeepSeekLM)
    {
        /// <summary>Loads a Hub checkpoint folder. Strict (default): a missing or unexpected tensor name is an error
        /// naming them all; lenient: they are reported in the LoadReport. MTP layers (model.layers.{num_hidden_layers}.*)
        /// need MTP modules, or a lenient load.</summary>
        public static (DeepSeekLM Model, LoadReport Report) FromPretrained(string folder, bool strict = true, Device? device = null, ScalarType? dtype = null)
            => HubCheckpoint.Load(folder, strict, device, dtype);
    }

    extension(DeepSeekLM model)
    {
        /// <summary>Saves as a Hub checkpoint folder transformers loads: sharded (+ model.safetensors.index.json) when
        /// larger than <paramref name="maxShardBytes"/>, optionally with FP8 weights; atomically.</summary>
        public HubSaveReport SavePretrained(string folder, long maxShardBytes = HubCheckpoint.DefaultMaxShardBytes, bool fp8 = false)
            => HubCheckpoint.Save(model, folder, maxShardBytes, fp8);
    }
}
