"""Every error chancy_lite raises on purpose.

All of them derive from :class:`ChancyError`. Errors about bad input also derive
from ``ValueError`` or ``TypeError`` so that code written for plain Python keeps
catching them.
"""

from __future__ import annotations


class ChancyError(Exception):
    """Base class of every chancy_lite error."""


class ConfigurationError(ChancyError, ValueError):
    """A setting or a path given to chancy_lite cannot work."""


class InvalidJobError(ChancyError, ValueError):
    """A job cannot be pushed as it is (its function, queue, attempts...)."""


class NotSerializableError(InvalidJobError, TypeError):
    """Job kwargs or meta cannot be stored as JSON."""


class InvalidQueueError(ChancyError, ValueError):
    """A queue declaration is not valid."""


class InvalidExecutorError(InvalidQueueError):
    """A queue's executor cannot be imported here, or is not an Executor class."""


class DependencyTooOldError(ChancyError, ImportError):
    """An installed dependency (apsw) is older than chancy_lite needs: upgrade it."""


class MissingDependencyError(ChancyError, ImportError):
    """An optional dependency is not installed: the message names the extra to install."""


class InvalidCronError(ChancyError, ValueError):
    """A cron expression or time zone that cannot be scheduled (the message says what to change)."""


class MigrationsNeededError(ChancyError):
    """The database schema is older than this code: run ``migrate()``."""


class SchemaTooNewError(ChancyError):
    """The database was migrated by a newer chancy_lite than this one."""


class DatabaseError(ChancyError):
    """The database could not do what was asked."""


class NotADatabaseError(DatabaseError):
    """The file exists but is not a SQLite database (or is corrupt)."""


class ReadOnlyDatabaseError(DatabaseError):
    """The database file or its directory cannot be written."""


class DatabaseBusyError(DatabaseError, TimeoutError):
    """Another connection held the write lock for longer than the busy timeout."""


class DatabaseFullError(DatabaseError):
    """The disk (or the file's size limit) is full."""


class JobNotFoundError(ChancyError, KeyError):
    """No job has the given id."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want plain text.
        return str(self.args[0]) if self.args else "job not found"
