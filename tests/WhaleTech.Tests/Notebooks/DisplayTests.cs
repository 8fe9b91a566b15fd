using WhaleTech.Lab.Notebooks;
using WhaleTech.Runtime;

namespace WhaleTech.Tests.Notebooks;

public class DisplayTests
{
    [Fact]
    public void CapturedItemsCarryMimeTypeAndData()
    {
        var items = new List<DisplayItem>();
        using (Display.Capture(items.Add))
        {
            Display.Markdown("# hi");
            Display.Table(["n", "ms"], [[1, 0.5], [2, null]]);
        }
        Display.Markdown("not captured");                                 // back to Console after Dispose
        Assert.Equal(2, items.Count);
        Assert.Equal(new DisplayItem("text/markdown", "# hi", "# hi"), items[0]);
        Assert.Equal("| n | ms |\n|---|---|\n| 1 | 0.5000 |\n| 2 |  |\n", items[1].Data);
    }

    [Fact]
    public void BadInputIsNamed()
    {
        Assert.Contains("png", Assert.Throws<WhaleArgumentException>(() => Display.Png([1, 2, 3, 4, 5, 6, 7, 8])).Message);
        Assert.Contains("rows[0]", Assert.Throws<WhaleArgumentException>(() => Display.Table(["a", "b"], [[1]])).Message);
        Assert.Contains("pngPath", Assert.Throws<WhaleArgumentException>(() => Display.Image("/nonexistent/x.png")).Message);
    }
}
