"""Where a build lands: written beside ``--output``, then swapped in whole; one build per output at a time.

The contract: at every instant, ``kill -9`` included, ``--output`` holds the previous complete build or the new
complete build, never a half-written one, and never nothing where a build was.

- **Lock.** ``.<name>.lock`` beside the output is held (``flock``) for the whole build, so a second build of the
  same output stops at once, naming the pid of the first. The kernel drops the lock when its holder dies; the
  file of a killed build stays, harmless, until the next build of that output takes it over.
- **Staging.** The build is written into ``.<name>-building-<random>/`` beside the output: the same filesystem, so
  the swap is a rename, not a copy. Holding the lock, a build knows any other staging folder is a dead build's
  and removes it (the builder's scratch lives inside it too).
- **Swap.** ``renameat2(RENAME_EXCHANGE)`` trades the two folders in one atomic step (Linux >= 3.15; ext4, xfs,
  btrfs, tmpfs, ...). Where the system cannot, the old build is renamed to ``.<name>-previous`` and the new one
  into place; a kill between the two renames leaves the old build there, and the next build of that output moves
  it back before anything else.
- **Signals.** Ctrl-C, SIGTERM and SIGHUP, to the process or its whole group, stop the build with one line:
  workers ignore SIGINT and are ended by the main process; a worker whose main process died, even by SIGKILL, is
  killed by the kernel (``PR_SET_PDEATHSIG``); the pools a build makes (``pools.py``) are forked, and do not wait for
  ever for a killed worker. Signals wait while the swap runs, so it is never cut in half.
- **Environment.** An ``OSError`` (read-only folder, full disk, ``/proc``) becomes one ``BuildError`` line; the old
  build is untouched, because nothing was swapped.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import gc
import glob
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from .errors import BuildError, BuildInterrupted, InputError, find_cause

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def sibling(output: str, suffix: str) -> str:
    """A hidden path beside ``output``: ``.<name><suffix>``."""
    return os.path.join(os.path.dirname(output), f".{os.path.basename(output)}{suffix}")


class _Stop:
    """This process's view of stop signals during a build (module state: signal handlers are process-wide)."""

    signal: int | None = None  # the first stop signal received
    deferred = False  # True while the swap runs or the build is already stopping: note signals, raise none
    main_pid: int | None = None  # set while a build runs here; read by workers forked from it
    replaced: dict = {}  # the handlers the build replaced, which workers go back to


def _on_stop_signal(signum, frame):
    if _Stop.signal is None:
        _Stop.signal = signum
    if not _Stop.deferred:
        _Stop.deferred = True  # a second Ctrl-C must not cut the clean-up of the first
        raise KeyboardInterrupt


def _forking() -> None:
    """Before a fork while a build runs here: stop signals wait (blocked) until the child has its own handlers.

    A child starts with the build's handlers; a signal that reached it before ``_in_forked_worker`` replaced them
    (``Pool.terminate()`` right after starting a pool) was lost, and the worker lived on, blocking the pool's exit."""
    if _Stop.main_pid == os.getpid():
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)


def _forked() -> None:
    if _Stop.main_pid == os.getpid():
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def _in_forked_worker() -> None:
    """Runs in every child forked while a build runs here (the ``num_proc`` pool, its manager)."""
    parent, _Stop.main_pid = _Stop.main_pid, None
    if parent is None:
        return
    for signum, handler in _Stop.replaced.items():  # SIGTERM as before: Pool.terminate() ends a worker quietly
        signal.signal(signum, handler)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the main process stops the build
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # what came since the fork now meets these handlers
    # What a worker inherited is the main process's, not garbage of its own: its collections leave it out (each one
    # scanned the whole inherited heap, a tenth of a scenes worker's time, and copied its pages).
    gc.freeze()
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:  # the main process died before prctl took effect
            os._exit(1)


os.register_at_fork(before=_forking, after_in_parent=_forked, after_in_child=_in_forked_worker)


@contextmanager
def _stop_signals() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into Ctrl-C for the build's duration; mark forked children as workers."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    handled = [signum for signum in STOP_SIGNALS if signal.getsignal(signum) is not signal.SIG_IGN]  # nohup stays
    _Stop.replaced = {signum: signal.signal(signum, _on_stop_signal) for signum in handled}
    _Stop.signal, _Stop.deferred, _Stop.main_pid = None, False, os.getpid()
    try:
        yield
    finally:
        _Stop.main_pid, _Stop.signal = None, None
        for signum, handler in _Stop.replaced.items():
            signal.signal(signum, handler)


@contextmanager
def _deferred_signals() -> Iterator[None]:
    """Run a block that a signal must not cut in half; a signal that came meanwhile is raised at its end."""
    already, _Stop.deferred = _Stop.deferred, True
    try:
        yield
    finally:
        _Stop.deferred = already
    if _Stop.signal is not None and not already:
        _Stop.deferred = True
        raise KeyboardInterrupt


def _exchange(a: str, b: str) -> bool:
    """Trade two paths in one atomic step; ``False`` where the kernel or filesystem cannot."""
    renameat2 = getattr(_LIBC, "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), b)


def _swap_into_place(new: str, output: str) -> None:
    """Put the folder ``new`` at ``output``; an old build there ends up at ``new``'s path or is removed."""
    if not os.path.lexists(output):
        os.rename(new, output)
    elif not _exchange(new, output):
        previous = sibling(output, "-previous")
        os.rename(output, previous)  # a kill from here ...
        os.rename(new, output)  # ... to here leaves the old build at `previous`, for _recover to move back
        shutil.rmtree(previous)


def _recover(output: str) -> None:
    """Finish what a killed build left half done: move a build left aside back in place, remove dead staging."""
    previous = sibling(output, "-previous")
    if os.path.lexists(previous):
        if os.path.lexists(output):  # the swap was complete; only removing the old build was cut short
            shutil.rmtree(previous)
        else:  # killed between the two renames: the old build goes back
            os.rename(previous, output)
    for stale in glob.glob(glob.escape(sibling(output, "-building-")) + "*"):
        shutil.rmtree(stale, ignore_errors=True)


@contextmanager
def _locked(output: str) -> Iterator[None]:
    """Hold ``.<name>.lock`` beside ``output`` (its content: our pid); removed again when the build ends."""
    path = sibling(output, ".lock")
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise BuildError(
                f"{output}: another lgt build (pid {holder}) is writing it; wait for it to finish or choose "
                "another --output"
            ) from None
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)  # we locked a file its last holder had just removed: lock the one at the path now
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)  # before the lock is dropped, so a build that opens it later locks a fresh file
        os.close(fd)


class Staging:
    """The private folder a build writes into; ``commit()`` makes ``folder`` the new ``--output``."""

    def __init__(self, output: str):
        self.output = output
        self.had_build = os.path.lexists(output)
        self.root = tempfile.mkdtemp(prefix=f".{os.path.basename(output)}-building-", dir=os.path.dirname(output))
        self.folder = os.path.join(self.root, "out")
        self.cache = os.path.join(self.root, "cache")
        self.committed = False

    def path(self, name: str) -> str:
        """A scratch file of this build, outside what becomes ``--output``."""
        return os.path.join(self.root, name)

    def commit(self, companions: dict[str, str | None]) -> None:
        """Swap the build into place, then each companion file beside it (target: staged file, or None to drop)."""
        with _deferred_signals():
            _swap_into_place(self.folder, self.output)
            self.committed = True
            for target, staged in companions.items():
                if staged is not None:
                    os.replace(staged, target)
                elif os.path.lexists(target):
                    os.remove(target)

    def outcome(self) -> str:
        """What ``--output`` holds now, in words, for a build that stopped."""
        if self.committed:
            return f"the new build was already complete and is in place at {self.output}"
        if self.had_build:
            return f"{self.output} still holds the previous build"
        return f"nothing was written to {self.output}"


@contextmanager
def staged_output(output: str, marker: str) -> Iterator[Staging]:
    """Lock ``output``, repair what a killed build left, and give a ``Staging`` to write the build into.

    ``marker`` is a file every build folder holds: a folder at ``output`` without it is not replaced. On the way
    out the staging folder is removed; an ``OSError`` becomes a one-line ``BuildError`` and a stop signal a
    ``BuildInterrupted`` saying what ``output`` holds.
    """
    staging = None
    with _stop_signals():
        try:
            os.makedirs(os.path.dirname(output), exist_ok=True)
            with _locked(output):
                _recover(output)
                if os.path.lexists(output) and not os.path.isfile(os.path.join(output, marker)):
                    raise FileExistsError(
                        f"{output} exists and is not an lgt build: choose another --output or remove it"
                    )
                staging = Staging(output)
                try:
                    yield staging
                finally:
                    _Stop.deferred = True  # leave nothing behind, whatever signal comes now
                    shutil.rmtree(staging.root, ignore_errors=True)
        except BaseException as error:
            outcome = staging.outcome() if staging else f"{output} was left as it was"
            if _Stop.signal is not None:
                raise BuildInterrupted(_Stop.signal, outcome) from None
            if not isinstance(error, Exception) or find_cause(error, (InputError, BuildError)):
                raise
            cause = find_cause(error, OSError)
            if cause is not None and cause.errno is not None:  # not the FileExistsError above, which has none
                where = f" ({cause.filename})" if cause.filename else ""
                raise BuildError(f"cannot build {output}: {cause.strerror or cause}{where}; {outcome}") from error
            raise
