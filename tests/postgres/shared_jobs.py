"""One job module, two engines: the README's "Moving to Chancy on Postgres" recipe, run by the tests on chancy_lite
(with ``import chancy`` aliased to chancy_lite) and by a real Chancy 0.26 worker on Postgres.

Only Chancy's public API is used: ``job``, ``QueuedJob`` (keyword-only context injection) and ``context.meta``.
"""

from chancy import QueuedJob, job


@job(queue="bulk")
def add(*, a: int, b: int, context: QueuedJob) -> None:
    context.meta["sum"] = a + b


@job(queue="bulk", max_attempts=3)
def flaky(*, context: QueuedJob) -> None:
    """Fails on its first attempt, on either engine; succeeds on the next."""
    if context.attempts == 0:
        raise RuntimeError("the first attempt fails")
    context.meta["succeeded_on_attempt"] = context.attempts + 1


@job(queue="asyncq")
async def ping(*, context: QueuedJob) -> None:
    context.meta["pong"] = True


@job(queue="proc")
def square(*, x: int, context: QueuedJob) -> None:
    context.meta["square"] = x * x


def tick() -> None:
    """A cron target."""
