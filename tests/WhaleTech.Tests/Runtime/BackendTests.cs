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
    }
}
