// Registers the library's own attention variants when the assembly loads, before any config is validated.
// A new variant of the library is one file (its layer and AttentionVariant) plus one line here.
using System.Runtime.CompilerServices;
using WhaleTech.Core;

namespace WhaleTech.Attention;

static class BuiltInAttention
{
#pragma warning disable CA2255 // a module initializer is the one way a lower layer (Core's registry) gets filled without referencing this one
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void Register()
    {
        AttentionVariants.Register(new MlaVariant());
        AttentionVariants.Register(StandardAttentionVariant.Mha);
        AttentionVariants.Register(StandardAttentionVariant.Gqa);
        AttentionVariants.Register(StandardAttentionVariant.Mqa);
    }
}
