"""Parquet tables as the tabular loader reads CSV: a header and rows of cell strings (pyarrow, optional).

Cells become the strings a CSV export would hold (missing: empty), so column kinds, missing values and
the checks are decided by the same code for both formats.
"""

from __future__ import annotations

import math
from pathlib import Path

from danlu.errors import DataError

SUFFIXES = (".parquet", ".pq")


def is_parquet(path: str | Path) -> bool:
    return Path(path).suffix.lower() in SUFFIXES


def _cell(v: object) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if hasattr(v, "isoformat"):  # dates and timestamps as ISO text, which the date detection reads
        return v.isoformat()
    return str(v)


def read_parquet(path: str | Path) -> tuple[list[str], list[list[str]]]:
    """Header and rows (strings) of a Parquet file."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"{path} is a Parquet file, and reading one needs pyarrow",
                        hint="pip install 'danlu[parquet]' (or pyarrow), or save the table as CSV") from None
    try:
        table = pq.read_table(path)
    except Exception as e:  # noqa: BLE001 - pyarrow's own errors for a damaged or non-Parquet file
        raise DataError(f"{path} cannot be read as Parquet: {str(e)[:200]}",
                        hint="check the file (is it really Parquet?), or save the table as CSV") from None
    header = [str(c) for c in table.column_names]
    if not header or table.num_rows == 0:
        raise DataError(f"{path} has no rows", hint="a table needs a header and data rows")
    columns = [[_cell(v) for v in table.column(j).to_pylist()] for j in range(len(header))]
    return header, [list(r) for r in zip(*columns, strict=True)]
