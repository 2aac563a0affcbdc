"""The errors a user can act on, each one line fit to print as is; anything else is a bug and keeps its traceback.

- ``InputError``: a record of the user's input cannot be used (``FILE [record R]: problem``); exit 2.
- ``BuildError``: the build stopped for a reason outside any one record (the output folder, the disk, another
  build of the same output); exit 1. ``EmptyBuildError``: it would have published an empty config; exit 2.
- ``GenerationError``: a model, its server or the generation cache failed; the line names which (backend, model,
  URL, cache file) and what to do; exit 1 for the environment (a server down, a damaged file), 2 for the input (a
  model or setting that cannot work, a file that is not a generation cache).
- ``BuildInterrupted``: Ctrl-C, SIGTERM or SIGHUP stopped it; the message says what ``--output`` holds now.
"""

from __future__ import annotations


class InputError(ValueError):
    """A record of the user's input cannot be used.

    The message is one line, ``FILE [record R]: what is wrong``, fit to print as is; ``source``/``record`` let a
    skipping build list the reject in its report.
    """

    def __init__(self, source: str, record: str | None, problem: str):
        self.source = str(source)
        self.record = None if record is None else str(record)
        self.problem = problem
        where = self.source if self.record is None else f"{self.source} [record {self.record}]"
        super().__init__(one_line(f"{where}: {problem}"))

    def __reduce__(self):  # keep the fields when the error crosses a process boundary (num_proc workers)
        return (type(self), (self.source, self.record, self.problem))

    def as_reject(self) -> dict:
        return {"file": self.source, "record": self.record, "problem": self.problem}

    @classmethod
    def from_reject(cls, reject: dict) -> InputError:
        return cls(reject["file"], reject["record"], reject["problem"])


class BuildError(RuntimeError):
    """The build cannot finish for a reason outside the records; the previous build at ``--output`` is untouched."""

    exit_code = 1


class EmptyBuildError(BuildError):
    """A config came out without a single row: publishing it would replace a good build with nothing."""

    exit_code = 2


class GenerationError(BuildError):
    """A model could not be loaded or did not answer, or the generation cache cannot be used: one line saying which
    and what to do. Nothing it concerns was cached; what was answered before it is kept."""

    def __init__(self, message: str, exit_code: int = 1):
        self.exit_code = exit_code
        super().__init__(one_line(message))

    def __reduce__(self):
        return (type(self), (str(self), self.exit_code))


class BuildInterrupted(KeyboardInterrupt):
    """A stop signal ended the build; ``str()`` says what ``--output`` holds now, ``exit_code`` is 128 + signal."""

    def __init__(self, signum: int, outcome: str):
        self.exit_code = 128 + signum
        super().__init__(outcome)


def one_line(text: str) -> str:
    """``text`` with line breaks and other unprintable characters escaped: a name may hold any of them."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def find_cause(error: BaseException | None, kind: type | tuple[type, ...]) -> BaseException | None:
    """The first error of ``kind`` along ``error``'s chain of causes, e.g. behind a ``DatasetGenerationError``."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, kind):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None
