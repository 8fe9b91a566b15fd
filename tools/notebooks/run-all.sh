#!/usr/bin/env bash
# Executes every notebook in notebooks/ headless with the real .NET Interactive C# kernel (Jupyter's
# nbconvert), into a temporary folder, and fails on any cell error or when the fresh outputs differ from the
# stored ones in anything but timings (tools/notebooks/normalize.py says exactly what is ignored).
#
#   bash tools/notebooks/run-all.sh                        # check all notebooks (CI runs this)
#   bash tools/notebooks/run-all.sh --update               # ... and store the fresh outputs in notebooks/
#   bash tools/notebooks/run-all.sh notebooks/01-mla.ipynb # just these
#
# Installs what it needs, idempotently: Debian's jupyter-nbconvert (apt-get, when `jupyter-nbconvert` is
# missing), the pinned dotnet-interactive tool (.config/dotnet-tools.json) and its Jupyter kernel spec.
# The tracked notebooks are only written with --update.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)

update=0
notebooks=()
for arg in "$@"; do
    case "$arg" in
        --update) update=1 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) notebooks+=("$arg") ;;
    esac
done
[ ${#notebooks[@]} -gt 0 ] || notebooks=(notebooks/*.ipynb)

export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_INTERACTIVE_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
export WHALETECH_DEVICE=${WHALETECH_DEVICE:-cpu}   # stored outputs are CPU outputs
started=$SECONDS
step() { echo "run-all: [$((SECONDS - started)) s] $*"; }

# 1. Jupyter's nbconvert (Debian package; pulls in nbclient and jupyter-client; no Python kernel is needed).
if ! command -v jupyter-nbconvert >/dev/null 2>&1; then
    step "installing jupyter-nbconvert (apt)"
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        jupyter-nbconvert >/dev/null
fi

# 2. The .NET Interactive kernel: the pinned local tool, and its kernel spec (`dotnet interactive jupyter ...`,
#    which finds the local tool because nbconvert starts the kernel in notebooks/).
step "dotnet tool restore"
dotnet tool restore >/dev/null
kernels=$(jupyter kernelspec list 2>/dev/null || true)
if ! grep -q '^ *\.net-csharp ' <<<"$kernels"; then
    step "registering the .NET Interactive Jupyter kernels"
    # dotnet-interactive writes into Jupyter's user data folder but does not create it (a fresh machine has none).
    mkdir -p "$(jupyter --data-dir)/kernels"
    dotnet dotnet-interactive jupyter install >/dev/null
fi

# 3. What notebooks/setup.csx references.
step "building src/WhaleTech.Cli (Debug)"
dotnet build src/WhaleTech.Cli -c Debug -nologo -v quiet -clp:ErrorsOnly

# 4. Execute each notebook into a temporary folder, then compare (or store).
python3 tools/notebooks/normalize.py selftest
out=$(mktemp -d "${TMPDIR:-/tmp}/whaletech-notebooks.XXXXXX")
trap 'rm -rf "$out"' EXIT
failed=()
for nb in "${notebooks[@]}"; do
    name=$(basename "$nb")
    t0=$SECONDS
    # --allow-errors: a failing cell is recorded in the executed notebook, and `errors` prints it in full.
    if ! jupyter nbconvert --to notebook --execute "$nb" --output-dir "$out" --output "$name" --allow-errors \
            --ExecutePreprocessor.kernel_name=.net-csharp --ExecutePreprocessor.timeout=900 \
            >"$out/$name.log" 2>&1; then
        step "$nb: FAILED to execute ($((SECONDS - t0)) s)"
        grep -v -e '^info: ' -e '^      ' -e 'Debugger warning' -e 'frozen modules' -e 'PYDEVD' -e 'Debugging will proceed' "$out/$name.log" | tail -40
        failed+=("$nb")
        continue
    fi
    if ! python3 tools/notebooks/normalize.py errors "$out/$name"; then
        step "$nb: a cell FAILED ($((SECONDS - t0)) s; errors above)"
        failed+=("$nb")
        continue
    fi
    if [ $update = 1 ]; then
        python3 tools/notebooks/normalize.py clean "$out/$name" "$nb"
        step "$nb: executed in $((SECONDS - t0)) s, stored"
    elif python3 tools/notebooks/normalize.py compare "$nb" "$out/$name"; then
        step "$nb: executed in $((SECONDS - t0)) s, outputs match"
    else
        step "$nb: executed in $((SECONDS - t0)) s, outputs DIFFER from the stored ones (diff above; rerun with --update if intended)"
        failed+=("$nb")
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "run-all: ${#failed[@]} notebook(s) failed: ${failed[*]}" >&2
    exit 1
fi
step "all ${#notebooks[@]} notebook(s) ok"
