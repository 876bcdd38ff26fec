"""A digest of a built dataset's content, to check that a refactor changed no row, no image and no card byte.

    python benchmarks/digest.py OUTPUT_DIR [OUTPUT_DIR ...]

Prints, per directory, one SHA-256 over every exported row (all columns, images' bytes included, rows sorted by
id, splits in order) and one over the dataset card (README.md) and recipe.yaml. Two builds of the same recipe
with the same code give the same digests (OMP_NUM_THREADS=1, as the tests pin it); a change of any row or card
byte changes them. build_info.json is left out: it records the code's version and the time.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pyarrow.parquet as pq


def rows_digest(out: Path) -> str:
    """SHA-256 over the rows of every split's files (``data/``), sorted by split then id."""
    digest = hashlib.sha256()
    for path in sorted((out / "data").rglob("*.parquet")):
        digest.update(str(path.relative_to(out / "data")).encode())
    rows = []
    for path in sorted((out / "data").rglob("*.parquet")):
        split = path.relative_to(out / "data").parts[0].split("-")[0]
        for row in pq.read_table(path).to_pylist():
            row = {k: (v["bytes"] if isinstance(v, dict) and "bytes" in v else v) for k, v in row.items()}
            rows.append((split, row["id"], row))
    for split, row_id, row in sorted(rows, key=lambda r: (r[0], r[1])):
        for name in sorted(row):
            value = row[name]
            encoded = value if isinstance(value, bytes) else json.dumps(value, sort_keys=True).encode()
            digest.update(f"{split}/{row_id}/{name}=".encode() + encoded)
    return digest.hexdigest()


def card_digest(out: Path) -> str:
    digest = hashlib.sha256()
    for name in ("README.md", "recipe.yaml"):
        digest.update((out / name).read_bytes())
    return digest.hexdigest()


def main(argv: list[str]) -> int:
    for directory in argv:
        out = Path(directory)
        rows = sum(pq.ParquetFile(p).metadata.num_rows for p in (out / "data").rglob("*.parquet"))
        print(f"{out}: {rows} rows  rows {rows_digest(out)}  card {card_digest(out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
