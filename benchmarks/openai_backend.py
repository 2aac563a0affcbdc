"""The openai backend's own cost, against local servers that answer at once (tests/openai_server.py), and the cost of
storing every answer the moment it arrives.

    python benchmarks/openai_backend.py [--requests 2000] [--concurrency 32]

- requests/s through ``Engine.generate`` (cold cache: dispatch on a thread per request, parsing, a commit per batch)
  with one replica, two replicas, and two replicas of which one dies after a quarter of the requests (failover);
- the cache: a transaction per answer against one transaction for all of them (WAL, synchronous=NORMAL), per answer.
The servers are Python's http.server, so the figures bound lgt's overhead from above, not a real server's speed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from lgt.generation import Engine, GenerationCache, Message, Request, Response, Sampling  # noqa: E402
from openai_server import Running  # noqa: E402


def through_engine(urls: list[str], requests: list[Request], concurrency: int) -> float:
    with tempfile.TemporaryDirectory() as work:
        engine = Engine(
            f"openai:bench@{','.join(urls)}",
            cache=Path(work) / "c.sqlite",
            progress=False,
            concurrency=concurrency,
            max_retries=1,
        )
        start = time.perf_counter()
        engine.generate(requests)
        return len(requests) / (time.perf_counter() - start)


def commit_cost(count: int) -> tuple[float, float]:
    """Microseconds per answer: one transaction each, and one for all."""
    response = Response(("<think>a short chain of thought</think> <answer>A</answer>" * 4,), ("stop",), 100, 30)
    rows = [(i.to_bytes(32, "big"), "m", "t@1", response) for i in range(2 * count)]
    with tempfile.TemporaryDirectory() as work, GenerationCache(Path(work) / "c.sqlite") as cache:
        start = time.perf_counter()
        for row in rows[:count]:
            cache.put_many([row])
        each = (time.perf_counter() - start) / count
        start = time.perf_counter()
        cache.put_many(rows[count:])
        together = (time.perf_counter() - start) / count
    return 1e6 * each, 1e6 * together


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    requests = [Request((Message.text("user", f"question {i}"),), Sampling(n=2, seed=i)) for i in range(args.requests)]
    servers = [Running(), Running()]
    try:
        one = through_engine([servers[0].url], requests, args.concurrency)
        two = through_engine([s.url for s in servers], requests, args.concurrency)
        dying = Running(die_after=args.requests // 8)
        failover = through_engine([dying.url, servers[1].url], requests, args.concurrency)
        dying.stop()
    finally:
        for server in servers:
            server.stop()
    each, together = commit_cost(args.requests)
    print(f"{args.requests:,} requests (n=2), concurrency {args.concurrency}, through Engine.generate:")
    print(f"  one replica                    {one:8,.0f} requests/s")
    print(f"  two replicas                   {two:8,.0f} requests/s")
    print(f"  two, one dying a quarter in    {failover:8,.0f} requests/s")
    print(f"cache: a transaction per answer {each:6.1f} us/answer, one for all {together:6.1f} us/answer")


if __name__ == "__main__":
    main()
