"""The lake's id map: every id in the hashed range (`data.ids.HASHED_BASE` and up) a log landed, with
the text it came from, so a team can map Loupe's ids back and a collision cannot go unseen.

lake/id_map/<log_type>/dt=<YYYY-MM-DD>/*.parquet    entity, log_type, column, original, id
    one row per distinct (column, original, id) among the valid rows of that landing day (landed
    or dropped as duplicates: a colliding twin dropped as a duplicate must still be seen); ids below
    HASHED_BASE are their own text and are not recorded.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from data import columns as c

ID_MAP = "id_map"
SCHEMA = pa.schema(
    [
        pa.field(c.ENTITY, pa.string()),
        pa.field(c.LOG_TYPE, pa.string()),
        pa.field(c.ID_COLUMN, pa.string()),
        pa.field(c.ORIGINAL_ID, pa.string()),
        pa.field(c.ID, pa.int64()),
    ]
)


# A run's logs are ingested concurrently (pipelines/defs/ingest/assets.py): one log's collision
# check reads every log's id map while another log may be replacing its partitions (removed, then
# the written folder moved in: data/ingest/partition.py). Writers and that reader take this lock,
# so the reader never meets a half-written or vanished file. It holds within one process (a run's
# logs are one step); runs in parallel processes (per-day backfill runs) are not covered.
WRITE_LOCK = threading.Lock()


def root_dir(lake_dir: Path) -> Path:
    return Path(lake_dir) / ID_MAP


def partition_dir(lake_dir: Path, log_type: str, day: str) -> Path:
    return root_dir(lake_dir) / log_type / f"{c.DT}={day}"


def _read(folder: Path, filter_=None) -> pd.DataFrame:
    """Rows of the id map under `folder` (all of it, one log, or one partition), with `dt`."""
    columns = [*SCHEMA.names, c.DT]
    if not folder.is_dir():
        return pd.DataFrame({name: pd.Series(dtype="int64" if name == c.ID else "object") for name in columns})
    dataset = pads.dataset(
        folder,
        schema=SCHEMA.append(pa.field(c.DT, pa.string())),
        format="parquet",
        partitioning=pads.partitioning(pa.schema([(c.DT, pa.string())]), flavor="hive"),
    )
    return dataset.to_table(filter=filter_, columns=columns).to_pandas()


def lookup(lake_dir: Path, ids: Iterable[int]) -> dict[int, list[dict]]:
    """Where each id came from: its original texts, each with the log, column and landing day."""
    wanted = sorted({int(i) for i in ids})
    out: dict[int, list[dict]] = {i: [] for i in wanted}
    if wanted:
        rows = _read(root_dir(lake_dir), pc.field(c.ID).isin(wanted))
        for row in rows.drop_duplicates([c.ID, c.ORIGINAL_ID, c.LOG_TYPE, c.ID_COLUMN, c.DT]).itertuples():
            out[row.id].append(
                {c.ORIGINAL_ID: row.original, c.LOG_TYPE: row.log_type, c.ID_COLUMN: row.column, c.DT: row.dt}
            )
    return out


def collisions(lake_dir: Path, log_type: str, day: str) -> list[dict]:
    """Ids of one landed (log, day) that more than one distinct text maps to, within an entity,
    anywhere in the lake's id map (any log, any day): each with its texts and where they landed."""
    mine = _read(partition_dir(lake_dir, log_type, day))[[c.ENTITY, c.ID]].drop_duplicates()
    if mine.empty:
        return []
    with WRITE_LOCK:
        rows = _read(root_dir(lake_dir), pc.field(c.ID).isin(mine[c.ID].unique().tolist()))
    rows = rows.merge(mine, on=[c.ENTITY, c.ID])  # an id of another entity is another account/post
    texts = rows.groupby([c.ENTITY, c.ID])[c.ORIGINAL_ID].nunique()
    found = []
    for (entity, identifier), _ in texts[texts > 1].items():
        same = rows[(rows[c.ENTITY] == entity) & (rows[c.ID] == identifier)]
        found.append(
            {
                c.ENTITY: entity,
                c.ID: int(identifier),
                "originals": sorted(same[c.ORIGINAL_ID].unique().tolist()),
                "seen_in": sorted(
                    {f"{r.log_type}.{r.column} dt={r.dt}: {r.original}" for r in same.itertuples()}
                ),
            }
        )
    return found
