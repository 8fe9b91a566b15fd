using SkiaSharp;

namespace WhaleTech.Tests.Plots;

/// <summary>A plot PNG a learner can look at: it exists, decodes, has a sensible size, and is not blank —
/// several colours, and a real share of pixels that are not the background.</summary>
public static class PngAssert
{
    public static void Readable(string path, int minWidth = 300, int minHeight = 200)
    {
        Assert.True(File.Exists(path), $"{path} was not written");
        Readable(File.ReadAllBytes(path), path, minWidth, minHeight);
    }

    public static void Readable(byte[] png, string name = "png", int minWidth = 300, int minHeight = 200)
    {
        Assert.True(png.Length > 2000, $"{name}: only {png.Length} bytes");
        Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, png[..4]);
        using var bitmap = SKBitmap.Decode(png);
        Assert.NotNull(bitmap);
        Assert.True(bitmap.Width >= minWidth && bitmap.Height >= minHeight, $"{name}: {bitmap.Width}×{bitmap.Height}");
        var background = bitmap.GetPixel(0, 0);
        var colours = new HashSet<SKColor>();
        long total = 0, foreground = 0;
        for (int y = 0; y < bitmap.Height; y += 2)
            for (int x = 0; x < bitmap.Width; x += 2)
            {
                var c = bitmap.GetPixel(x, y);
                colours.Add(c);
                total++;
                if (c != background) foreground++;
            }
        Assert.True(colours.Count >= 8, $"{name}: only {colours.Count} colours (blank or single-colour image)");
        Assert.True(foreground > total / 100, $"{name}: {foreground} of {total} sampled pixels differ from the background");
    }
}
