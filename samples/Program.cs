// Runs a numbered sample:  dotnet run -c Release --project samples -- 01   (list | all | NN [--quick] [--device cpu|cuda|auto])
using WhaleTech.Samples;

return SampleRunner.RunCommandLine(args);
