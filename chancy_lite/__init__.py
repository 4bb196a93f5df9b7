"""chancy_lite: a durable background-job queue in one SQLite file, with Chancy's API."""

from chancy_lite.app import Chancy
from chancy_lite.job import Job, Limit, QueuedJob, Reference, job
from chancy_lite.queue import Queue
from chancy_lite.worker import Worker

__all__ = ["Chancy", "Job", "Limit", "Queue", "QueuedJob", "Reference", "Worker", "job"]
__version__ = "0.1.0"
