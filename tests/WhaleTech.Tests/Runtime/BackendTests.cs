using TorchSharp;
using WhaleTech.Runtime;
using static TorchSharp.torch;

namespace WhaleTech.Tests.Runtime;

public class BackendTests
{
    [Fact]
    public void TorchSharpLoadsAndComputes()
    {
        Backend.Initialize();
        using var a = torch.arange(6, dtype: ScalarType.Float32).reshape(2, 3);
        using var b = a.matmul(a.t());
        Assert.Equal(new float[] { 5, 14, 14, 50 }, b.data<float>().ToArray());
    }

    [Fact]
    public void DeviceChoiceIsValidated()
    {
        Assert.Equal(DeviceType.CPU, Backend.ResolveDevice("cpu").type);
        var auto = Backend.ResolveDevice("auto");
        Assert.Equal(Backend.CudaAvailable ? DeviceType.CUDA : DeviceType.CPU, auto.type);
        var e = Assert.Throws<WhaleArgumentException>(() => Backend.ResolveDevice("tpu"));
        Assert.Contains("--device", e.Message);
        Assert.Contains("'tpu'", e.Message);
        if (!Backend.CudaAvailable)
            Assert.Contains("cuda", Assert.Throws<WhaleArgumentException>(() => Backend.ResolveDevice("cuda")).Message);
    }

    [Fact]
    public void MachineInfoDescribesTheHost()
    {
        var info = MachineInfo.Collect(torch.CPU);
        Assert.True(info.LogicalCores > 0);
        Assert.Contains("TorchSharp", info.ToString());
        if (File.Exists("/proc/cpuinfo") && File.ReadLines("/proc/cpuinfo").Any(l => l.StartsWith("cpu family", StringComparison.Ordinal)))
        {
            Assert.StartsWith("family ", info.CpuDetail);                   // x86 Linux: family/model in the machine line
            Assert.Contains($"[{info.CpuDetail}]", info.ToString());
            if (MachineInfo.HostMicroarchitecture is { } arch) Assert.Contains(arch, info.CpuDetail);   // the name kernels choose by
        }
    }

    [Fact]
    public void MachineInfoNamesTheZenGenerationThatSetsTheVectorRate()
    {
        Assert.Equal("Zen 4", MachineInfo.Microarchitecture("AuthenticAMD", 25, 17));   // EPYC 9004 (Genoa): 512-bit FMAs at half rate
        Assert.Equal("Zen 3", MachineInfo.Microarchitecture("AuthenticAMD", 25, 1));    // EPYC 7003 (Milan)
        Assert.Equal("Zen 5", MachineInfo.Microarchitecture("AuthenticAMD", 26, 2));    // EPYC 9005 (Turin)
        Assert.Equal("Zen 2", MachineInfo.Microarchitecture("AuthenticAMD", 23, 49));   // EPYC 7002 (Rome)
        Assert.Null(MachineInfo.Microarchitecture("GenuineIntel", 6, 143));
        // Results written before the field existed still read back (it is optional).
        const string before = "{\"cpu\":\"AMD EPYC\",\"logical_cores\":2,\"torch_threads\":1,\"memory_gib\":23.5,\"os\":\"x\",\"dotnet\":\"y\"," +
                              "\"torchsharp\":\"z\",\"libtorch\":\"w\",\"backend\":\"cpu\",\"device\":\"cpu\",\"gpu\":null,\"gpu_memory_gib\":null}";
        var old = System.Text.Json.JsonSerializer.Deserialize<MachineInfo>(before)!;
        Assert.Null(old.CpuDetail);
        Assert.Equal("AMD EPYC", old.Cpu);
    }
}
