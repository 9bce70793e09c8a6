"""Write contract frames as Parquet, byte for byte the same for the same input.

Fixed compression, no index, timestamps in microseconds (what every Parquet reader supports);
pyarrow writes no wall-clock time into the file, so equal frames give equal bytes for a given
pyarrow version.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["COMPRESSION", "frame_to_table", "write_frame", "write_table"]

COMPRESSION = "zstd"


def frame_to_table(frame: pd.DataFrame) -> pa.Table:
    """Arrow table of ``frame`` without index or pandas metadata, timestamps as timestamp[us]."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    fields = [
        pa.field(f.name, pa.timestamp("us")) if pa.types.is_timestamp(f.type) else f for f in table.schema
    ]
    return table.cast(pa.schema(fields)).replace_schema_metadata(None)


def write_frame(frame: pd.DataFrame, path: Path) -> Path:
    """Write ``frame`` to ``path`` as Parquet and return ``path``."""
    return write_table(frame_to_table(frame), path)


def write_table(table: pa.Table, path: Path) -> Path:
    """Write an Arrow ``table`` to ``path`` as Parquet and return ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table.replace_schema_metadata(None), path, compression=COMPRESSION)
    return path
