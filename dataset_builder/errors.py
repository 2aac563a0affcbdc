"""One error type for bad input, so every reader reports problems the same way: which file, which record, what."""


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
        super().__init__(f"{where}: {problem}")

    def __reduce__(self):  # keep the fields when the error crosses a process boundary (num_proc workers)
        return (type(self), (self.source, self.record, self.problem))

    def as_reject(self) -> dict:
        return {"file": self.source, "record": self.record, "problem": self.problem}
