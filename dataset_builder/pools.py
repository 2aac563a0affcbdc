"""The process pools of a build: forked whatever Python's default, and ended without waiting for a killed worker.

Every pool a build starts is one of these: ``datasets``' ``num_proc`` pool (the builder binds ``WorkerPool`` where
``datasets`` looks for it), the first pass over a JSON Lines file (``PiecePool``) and the audit (``FORK``).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.pool
import time

import multiprocess.pool

FORK = multiprocessing.get_context("fork")  # how a build starts its processes (see WorkerPool)


def _finish_tasks(inqueue, task_handler, size) -> None:
    """How a build's pools end (``Pool._help_stuff_finish``), without waiting for ever for the task queue's lock.

    An idle worker holds that lock while it waits for work. Killed there (SIGTERM or SIGHUP sent to the whole group:
    a closed terminal, ``scancel``, ``systemctl stop``), it never lets go of it, and the pool's end waited for it
    for ever. A live worker lets go of it within milliseconds, once the pool has told it that no work is left."""
    inqueue._rlock.acquire(timeout=QUEUE_LOCK_WAIT_S)
    while task_handler.is_alive() and inqueue._reader.poll():  # what the task handler may be blocked putting there
        inqueue._reader.recv()
        time.sleep(0)


QUEUE_LOCK_WAIT_S = 2.0


class WorkerPool(multiprocess.pool.Pool):
    """``datasets``' pool (``multiprocess``; bound in its builder module while a build runs), ended as
    ``_finish_tasks`` says, its workers forked whatever the default start method: Python 3.14's is forkserver, whose
    workers miss the build's fork hook (``output._in_forked_worker``: Ctrl-C printed each one's traceback)."""

    _help_stuff_finish = staticmethod(_finish_tasks)

    def __init__(self, processes: int):
        super().__init__(processes, context=multiprocess.get_context("fork"))


class PiecePool(multiprocessing.pool.Pool):
    """The standard library's pool (what ``pickle`` moves fastest), ended and started as ``WorkerPool``."""

    _help_stuff_finish = staticmethod(_finish_tasks)

    def __init__(self, processes: int):
        super().__init__(processes, context=FORK)
