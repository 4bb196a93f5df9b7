"""Every SQL statement of the Metrics plugin, named, with what it does. No logic lives here.

``{p}`` is the table prefix. Times are INTEGER microseconds since the epoch (UTC), as in the core tables.

The shape (chancy_lite's own; Chancy 0.26 keeps arrays of 12 buckets per row, which SQLite has not):

* ``{p}metric_definitions``: one row per metric key, with its type and unit (as 0.26);
* ``{p}metrics``: one row per (resolution, bucket, metric, worker). ``count`` is the number of observations,
  ``total`` their sum, ``minimum``/``maximum`` their extremes, ``gauge`` the value of the latest one and
  ``sampled_at`` its time. A counter is read from ``total``, a gauge from ``gauge``, a histogram from ``count``,
  ``total``, ``minimum`` and ``maximum``. Writers add to a row (an upsert), so the children of one worker share its
  rows and every worker has its own; readers merge the workers' rows. The key orders rows by time first: a flush
  touches the few pages of the current buckets, and expiry deletes a range at the start of each resolution; an
  index by metric serves queries by key and the deletion of unused definitions.
"""

from __future__ import annotations

# Steps of the "metrics" migration key: (up, down) for each version.
MIGRATIONS: list[tuple[list[str], list[str]]] = [
    (
        [
            """
            CREATE TABLE {p}metric_definitions (
                id INTEGER PRIMARY KEY,
                key TEXT NOT NULL UNIQUE,
                metric_type TEXT NOT NULL CHECK (metric_type IN ('counter', 'gauge', 'histogram')),
                unit TEXT NOT NULL
            )
            """,
            """
            CREATE TABLE {p}metrics (
                resolution INTEGER NOT NULL,
                bucket INTEGER NOT NULL,
                metric_id INTEGER NOT NULL REFERENCES {p}metric_definitions (id),
                worker_id TEXT NOT NULL,
                count INTEGER NOT NULL,
                total REAL NOT NULL,
                minimum REAL NOT NULL,
                maximum REAL NOT NULL,
                gauge REAL NOT NULL,
                sampled_at INTEGER NOT NULL,
                PRIMARY KEY (resolution, bucket, metric_id, worker_id)
            ) WITHOUT ROWID
            """,
            # A metric's rows: queries by key, and the foreign key's check when a definition is deleted (without
            # it, each deleted definition would scan the whole table). Only new bucket rows add entries.
            "CREATE INDEX {p}metrics_by_metric ON {p}metrics (metric_id, resolution, bucket)",
        ],
        ["DROP TABLE IF EXISTS {p}metrics", "DROP TABLE IF EXISTS {p}metric_definitions"],
    ),
]

# A key is defined on first use; a key already defined keeps its type and unit.
DEFINE_METRIC = """
INSERT INTO {p}metric_definitions (key, metric_type, unit) VALUES (:key, :type, :unit)
ON CONFLICT (key) DO NOTHING
"""
# Add observations to a bucket row, created if missing. Nothing is written when the key is defined with another type
# or unit (an observation that conflicts is dropped, as 0.26). The gauge keeps the latest value by sampled_at.
ADD_TO_BUCKET = """
INSERT INTO {p}metrics (resolution, bucket, metric_id, worker_id, count, total, minimum, maximum, gauge, sampled_at)
SELECT :resolution, :bucket, id, :worker_id, :observations, :total, :minimum, :maximum, :gauge, :sampled_at
FROM {p}metric_definitions WHERE key = :key AND metric_type = :type AND unit = :unit
ON CONFLICT (resolution, bucket, metric_id, worker_id) DO UPDATE SET
    count = count + excluded.count,
    total = total + excluded.total,
    minimum = min(minimum, excluded.minimum),
    maximum = max(maximum, excluded.maximum),
    gauge = CASE WHEN excluded.sampled_at >= sampled_at THEN excluded.gauge ELSE gauge END,
    sampled_at = max(sampled_at, excluded.sampled_at)
"""
# The type and unit each of these keys (a JSON array) is defined with.
GET_DEFINITIONS = """
SELECT key, metric_type, unit FROM {p}metric_definitions WHERE key IN (SELECT value FROM json_each(?))
"""

# Expiry: up to :limit rows of one resolution whose bucket starts before :cutoff (a range of the primary key).
DELETE_EXPIRED = """
DELETE FROM {p}metrics
WHERE (resolution, bucket, metric_id, worker_id) IN (
    SELECT resolution, bucket, metric_id, worker_id FROM {p}metrics
    WHERE resolution = :resolution AND bucket < :cutoff
    LIMIT :limit
)
"""
# Definitions no metric row uses any more, up to :limit (one index probe per definition).
DELETE_ORPHAN_DEFINITIONS = """
DELETE FROM {p}metric_definitions WHERE id IN (
    SELECT d.id FROM {p}metric_definitions AS d
    WHERE NOT EXISTS (SELECT 1 FROM {p}metrics AS m WHERE m.metric_id = d.id)
    LIMIT :limit
)
"""

# Every key, sorted.
LIST_KEYS = "SELECT key FROM {p}metric_definitions ORDER BY key"
# Up to :limit keys that are :prefix itself or below it by whole segments (":prefix:..."); every key when :prefix is
# NULL. ';' is the character after ':', so the range is exactly the keys that start with ":prefix:".
MATCHING_DEFINITIONS = """
SELECT id, key, metric_type, unit FROM {p}metric_definitions
WHERE :prefix IS NULL OR key = :prefix OR (key >= :prefix || ':' AND key < :prefix || ';')
ORDER BY key
LIMIT :limit
"""
# The rows of some metrics (a JSON array of ids) in one resolution and window [:start, :end), of one worker or all.
READ_BUCKETS = """
SELECT metric_id, bucket, worker_id, count, total, minimum, maximum, gauge, sampled_at FROM {p}metrics
WHERE resolution = :resolution AND bucket >= :start AND bucket < :end
    AND metric_id IN (SELECT value FROM json_each(:ids))
    AND (:worker_id IS NULL OR worker_id = :worker_id)
"""
# How many metric rows there are (for tests and the status of the plugin).
COUNT_ROWS = "SELECT count(*) FROM {p}metrics"

# The bytes of every b-tree of the file (tables and indexes) with the table each belongs to, from the dbstat
# virtual table in its aggregate form (one row per b-tree). It reads every page: the leader samples it.
BTREE_SIZES = """
SELECT s.tbl_name, s.type, d.pgsize
FROM dbstat('main', 1) AS d JOIN sqlite_schema AS s ON s.name = d.name
WHERE s.type IN ('table', 'index')
"""
PAGE_SIZE = "PRAGMA page_size"
PAGE_COUNT = "PRAGMA page_count"
FREELIST_COUNT = "PRAGMA freelist_count"
