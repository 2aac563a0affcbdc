"""The disk a running `lgt build` takes beside its output: its staging folder, sampled while it runs.

    with ScratchMeter(output) as meter:
        run the build
    meter.peak_cache, meter.peak_total    # bytes: the builder's Arrow cache; cache + the output being written

`lgt build --output DIR` writes into `.DIR-building-*/` beside DIR (`cache/`: the Arrow files of the configs,
`out/`: the parquet files and card that become DIR), so its scratch is what that folder holds beyond `out/`.
"""

from __future__ import annotations

import glob
import os
import threading


def folder_bytes(folder: str) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:  # removed while we looked
                pass
    return total


class ScratchMeter:
    """Samples the staging folder of the build of ``output`` every ``interval`` seconds until the block ends."""

    def __init__(self, output: str, interval: float = 0.2):
        self.pattern = os.path.join(glob.escape(os.path.dirname(os.path.abspath(output))), "")
        self.pattern += f".{os.path.basename(os.path.abspath(output))}-building-*"
        self.interval = interval
        self.peak_cache = self.peak_total = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            for staging in glob.glob(self.pattern):
                cache = folder_bytes(os.path.join(staging, "cache"))
                self.peak_cache = max(self.peak_cache, cache)
                self.peak_total = max(self.peak_total, cache + folder_bytes(os.path.join(staging, "out")))

    def __enter__(self) -> ScratchMeter:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
