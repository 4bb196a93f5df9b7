"""The supervisor's duties, one module each, every one a :class:`Service` that a test can step with ``tick(now)``.

=================  ===============================================================  =====================
service            what one tick does                                               how often
=================  ===============================================================  =====================
``Heartbeat``      writes this worker's row; removes rows whose heartbeat expired    heartbeat_poll_interval
``Rescuer``        finds running jobs whose holder is gone and recovers them          heartbeat_poll_interval
                   from the holder's journal
``QueueWatcher``   resumes queues whose ``resume_at`` passed; starts, reconfigures   on a queue change, or
                   and stops executors to match the stored queues                    queue_change_poll_interval
``Checkpointer``   checkpoints the WAL when it changed (truncating it past 16 MiB)   0.1 s
``TimeLimits``     kills a child still running a job well past its TIME limit         1 s
``PluginRunner``   keeps each plugin's ``run()`` going, restarting it after errors   (a task per plugin)
=================  ===============================================================  =====================
"""

from chancy_lite.services.base import Service
from chancy_lite.services.checkpointer import Checkpointer
from chancy_lite.services.heartbeat import Heartbeat
from chancy_lite.services.plugins import PluginRunner
from chancy_lite.services.queues import QueueWatcher
from chancy_lite.services.rescuer import Rescuer
from chancy_lite.services.time_limits import TimeLimits

__all__ = ["Checkpointer", "Heartbeat", "PluginRunner", "QueueWatcher", "Rescuer", "Service", "TimeLimits"]
