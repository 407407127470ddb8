"""The rows of a merged dataset: `ROW_SCHEMA` plus a ``source`` column, and embeddings as arrays.

Adding a column keeps ``instructflow.schema_version`` at its value: every reader in instructflow
(recovery, exports, the hf folder, the report) selects the columns it needs by name, so a merged
root reads like a generated one. The schema metadata also carries ``instructflow.merged: "1"``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from instructflow.actors.core.schema import ROW_SCHEMA

SOURCE_DOC = (
    "Label of the dataset the row came from in `instructflow merge` (the input's folder name or the "
    "NAME of NAME=PATH); 'outer/inner' when the input was itself a merge. Only in merged datasets."
)

MERGED_SCHEMA: pa.Schema = ROW_SCHEMA.append(pa.field("source", pa.string(), nullable=False, metadata={"doc": SOURCE_DOC})).with_metadata(
    {**ROW_SCHEMA.metadata, b"instructflow.merged": b"1"}
)


def vectors_of(table: pa.Table, allow_missing: bool = False) -> np.ndarray:
    """The ``embedding`` column as an (n, d) float32 array. Rows without an embedding are NaN when
    `allow_missing`, else a ValueError; a table with no embedding at all gives (n, 1) of NaN."""
    column = table.column("embedding").combine_chunks()
    present = pc.is_valid(column)
    if column.null_count and not allow_missing:
        raise ValueError(f"{column.null_count} row(s) have no embedding")
    lengths = pc.unique(pc.list_value_length(column.filter(present))).to_pylist()
    if len(lengths) > 1:
        raise ValueError(f"embeddings of different sizes {lengths}")
    dim = lengths[0] if lengths else 1
    out = np.full((table.num_rows, dim), np.nan, dtype=np.float32)
    if lengths:
        mask = present.to_numpy(zero_copy_only=False)
        out[mask] = column.filter(present).flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)
    return out


def embedding_array(vectors: np.ndarray) -> pa.Array:
    """An (n, d) float32 array as the list<float32> ``embedding`` column."""
    n, dim = vectors.shape
    offsets = pa.array(np.arange(n + 1, dtype=np.int32) * dim)
    return pa.ListArray.from_arrays(offsets, pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1)))


def merged_table(table: pa.Table, label: str, vectors: np.ndarray, where: str) -> pa.Table:
    """`table`'s rows in `MERGED_SCHEMA`, ``source`` set from `label` and ``embedding`` from `vectors`.

    Raises:
        ValueError: `table` lacks a column of `ROW_SCHEMA` (`where` names the file it came from).
    """
    missing = [f.name for f in ROW_SCHEMA if f.name not in table.column_names]
    if missing:
        raise ValueError(f"{where}: no column(s) {missing}; it was not written by this instructflow")
    if "source" in table.column_names:
        source = pc.binary_join_element_wise(pa.scalar(label), table.column("source"), "/")
    else:
        source = pa.array([label] * table.num_rows, type=pa.string())
    arrays = [table.column(f.name).cast(f.type) for f in ROW_SCHEMA if f.name != "embedding"]
    return pa.Table.from_arrays([*arrays, embedding_array(vectors), source], schema=MERGED_SCHEMA)
