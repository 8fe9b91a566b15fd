#!/usr/bin/env bash
# Restore size and time of the two CPU backends, each into an EMPTY package folder (cold cache), from this
# workplace's package registry, on the shared 2-core Debian 12 VM (2026-11-23). times.txt holds what it printed.
#   cpu-bundle.csproj: TorchSharp-cpu 0.107.0 (all-platform natives: Linux + Windows + macOS)
#   linux-x64.csproj:  TorchSharp 0.107.0 + libtorch-cpu-linux-x64 2.10.0 (what WhaleTech restores on Linux x64)
set -euo pipefail
D=$(mktemp -d)
for v in cpu-bundle linux-x64; do
  mkdir -p "$D/$v" && cp "$(dirname "$0")/$v.csproj" "$D/$v/p.csproj"
  /usr/bin/time -f "$v restore: %e s wall" -a -o "$D/times.txt" env NUGET_PACKAGES="$D/pk-$v" dotnet restore "$D/$v/p.csproj" > /dev/null
  du -sh "$D/pk-$v" >> "$D/times.txt"
done
cat "$D/times.txt"
