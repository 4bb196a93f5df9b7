"""Every SQL statement of the Cron plugin, named, with the transition it makes. No logic lives here.

``{p}`` is the table prefix. Times are INTEGER microseconds since the epoch (UTC), as in the core tables; ``job``
is a packed Job (``Job.pack()``) as JSON text.
"""

from __future__ import annotations

# Steps of the "cron" migration key: (up, down) for each version.
MIGRATIONS: list[tuple[list[str], list[str]]] = [
    (
        [
            # Chancy 0.26's columns (its v1-v3 in one step): the schedule's key is the pushed job's unique_key.
            """
            CREATE TABLE {p}cron (
                unique_key TEXT PRIMARY KEY NOT NULL,
                job TEXT NOT NULL CHECK (json_valid(job)),
                cron TEXT NOT NULL,
                timezone TEXT NOT NULL DEFAULT 'Etc/UTC',
                last_run INTEGER,
                next_run INTEGER NOT NULL
            )
            """,
            # Serves "which schedules are due?" and "when is the next one?".
            "CREATE INDEX {p}cron_next_run ON {p}cron (next_run)",
        ],
        ["DROP TABLE IF EXISTS {p}cron"],
    ),
]

_COLUMNS = "unique_key, job, cron, timezone, last_run, next_run"

# schedule: a new schedule, or an existing key's job, expression, zone and next run replaced (last_run is kept).
UPSERT_SCHEDULE = """
INSERT INTO {p}cron (unique_key, job, cron, timezone, next_run)
VALUES (:unique_key, :job, :cron, :timezone, :next_run)
ON CONFLICT (unique_key) DO UPDATE
SET job = excluded.job, cron = excluded.cron, timezone = excluded.timezone, next_run = excluded.next_run
"""
# unschedule: the schedules with these keys (a JSON array) are gone.
DELETE_SCHEDULES = "DELETE FROM {p}cron WHERE unique_key IN (SELECT value FROM json_each(?))"
GET_ALL_SCHEDULES = "SELECT " + _COLUMNS + " FROM {p}cron ORDER BY unique_key"
GET_SCHEDULES = "SELECT " + _COLUMNS + " FROM {p}cron WHERE unique_key IN (SELECT value FROM json_each(?))" \
    " ORDER BY unique_key"
# run-now: the job of one schedule.
GET_SCHEDULE_JOB = "SELECT job FROM {p}cron WHERE unique_key = ?"

# The schedules due at :now, earliest first (read outside any transaction; each is then taken by ADVANCE_SCHEDULE).
DUE_SCHEDULES = """
SELECT unique_key, cron, timezone, next_run FROM {p}cron
WHERE next_run <= :now
ORDER BY next_run, unique_key
LIMIT :limit
"""
# Take one due run: next_run moves on and last_run becomes :now, guarded by the run read as due (and the expression
# and zone the new next_run was computed from). A worker that lost the race to another changes nothing, so each
# run is pushed once. Returns the job to push, in the same transaction.
ADVANCE_SCHEDULE = """
UPDATE {p}cron SET last_run = :now, next_run = :next_run
WHERE unique_key = :unique_key AND next_run = :due AND cron = :cron AND timezone = :timezone
RETURNING job
"""
# When the plugin should look again: the earliest run not yet due (NULL if none).
NEXT_WAKE = "SELECT min(next_run) FROM {p}cron WHERE next_run > :now"
