using WhaleTech.Samples;

namespace WhaleTech.Tests.Cli;

/// <summary>Every numbered sample runs on the CPU (quick sizes) and prints what its README promises.</summary>
public class SampleTests
{
    public static TheoryData<string> Numbers() => new(SampleRunner.All.Select(s => s.Number));

    [Theory]
    [MemberData(nameof(Numbers))]
    public void SampleRuns(string number)
    {
        var dir = Directory.CreateTempSubdirectory("whale-sample-").FullName;
        var output = new StringWriter();
        SampleRunner.Run(number, TorchSharp.torch.CPU, quick: true, outRoot: dir, output: output);
        var text = output.ToString();
        Assert.Contains($"== Sample {number}", text);
        Assert.DoesNotContain(": False", text);
        var sampleDir = Path.Combine(dir, number);
        if (Directory.Exists(sampleDir))                                    // only when the sample wrote something
        {
            Assert.NotEmpty(Directory.EnumerateFileSystemEntries(sampleDir));
            foreach (var png in Directory.GetFiles(sampleDir, "*.png", SearchOption.AllDirectories)) Plots.PngAssert.Readable(png);
        }
        Directory.Delete(dir, true);
    }
}
