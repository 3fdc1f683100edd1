"""How the record tables go to Parquet: dictionary pages, and no min/max statistics, where a column is categorical."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["categorical_columns", "open_writer", "write_records"]


def categorical_columns(schema: pa.Schema) -> list[str]:
    """The columns worth a dictionary page: those already dictionary-encoded (pandas categoricals).

    Parquet's default tries a dictionary on every column; on the record
    tables' float columns, mostly distinct values, that attempt is about two
    thirds of the write and gives a larger file (BENCHMARKS.md, Fleets).
    Their min/max statistics are left out: on a fleet's 10,000 names they
    cost 4x the column's write, and every row group holds every name anyway.
    """
    return [field.name for field in schema if pa.types.is_dictionary(field.type)]


def open_writer(path: Path, schema: pa.Schema) -> pq.ParquetWriter:
    """A writer of row groups of ``schema`` to ``path``: dictionaries on its categorical columns only, statistics on the rest."""
    categorical = categorical_columns(schema)
    others = [name for name in schema.names if name not in categorical]
    return pq.ParquetWriter(path, schema, use_dictionary=categorical, write_statistics=others)


def write_records(frame: pd.DataFrame, path: Path) -> None:
    """``frame`` (a request or batch table) to ``path`` in one go, as ``open_writer`` writes it."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    with open_writer(path, table.schema) as writer:
        writer.write_table(table)
