"""One-time set-up run by ``make install``: make DuckDB's Delta extension loadable offline.

DuckDB would download its ``delta`` extension at first use, which these machines cannot; the PyPI package
``duckdb-ext-delta`` ships the binary; DuckDB looks for it under ``~/.duckdb/extensions/<ver>/<platform>``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb


def delta_extension_path() -> Path:
    """The ``delta.duckdb_extension`` file shipped by ``duckdb-ext-delta`` for this DuckDB version."""
    import site

    version = f"v{duckdb.__version__}"
    for root in site.getsitepackages():
        hits = sorted(Path(root, "duckdb_ext", "extensions", version).glob("*/delta.duckdb_extension"))
        if hits:
            return hits[0]
    raise FileNotFoundError(f"duckdb-ext-delta for DuckDB {version} is not installed")


def install_duckdb_delta_extension(home: Path | None = None) -> Path:
    src = delta_extension_path()
    platform_dir = src.parent.name
    dest_dir = (home or Path.home()) / ".duckdb" / "extensions" / f"v{duckdb.__version__}" / platform_dir
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / src.name
    if not dest.exists() or dest.stat().st_size != src.stat().st_size:
        shutil.copyfile(src, dest)
    return dest


def main() -> None:
    dest = install_duckdb_delta_extension()
    con = duckdb.connect()
    con.execute("LOAD delta")
    print(f"DuckDB delta extension ready: {dest}")  # noqa: T201


if __name__ == "__main__":
    main()
