// Every benchmark suite, once. To add a suite: add Suites/<Name>Suite.cs implementing ISuite, and one line here.
namespace WhaleTech.Benchmarks;

public static class SuiteRegistry
{
    public static IReadOnlyList<ISuite> All { get; } =
    [
        new MatmulSuite(),
        new MicroSuite(),
        new DecodeSuite(),
        new GenerateSuite(),
        new MoeSuite(),
        new MoeRooflineSuite(),
        new MlaDecodeSuite(),
        new MlaRooflineSuite(),
        new MemorySuite(),
        new Fp8Suite(),
        new RolloutSuite(),
        new SpeculativeSuite(),
    ];

    public static ISuite? Find(string name) => All.FirstOrDefault(s => s.Name == name);
}
