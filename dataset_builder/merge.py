"""``lgt merge``: join the parts of a build (``lgt build --shard I/N``) into one dataset folder with one card.

A part holds its work units' files under the names they have in the whole build (``build.py``), so merging links
or copies them, never reading or re-encoding them; counts, Arrow sizes, rejects and what the models were asked and
cost are added up from the parts' build records, and what needs every row is done again over the merged rows, as
the whole build does it: the card's statistics, the blind-reader audit, the judge. The result is row for row the
build one machine would have made of the same source with the same settings.

Parts built by other code or with other settings are refused, as are a missing part or one given twice.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import time

from datasets.utils import logging

from .build import BUILD_INFO_FILE, OBJECT_NAMES_KEY, complete, rejects_path, screened_report
from .card import count_rows, split_files
from .hub import push_card
from .output import staged_output
from .settings import LGTConfig, check_names, recorded
from .stages import STAGES

logger = logging.get_logger(__name__)

# What every part must share: the code that built it and everything it was built from and with.
SAME = {
    "lgt_code": "lgt code",
    "lgt_version": "lgt version",
    "datasets_version": "datasets version",
    "arguments": "settings",
    "configs": "configs",
    "source": "source",
    "units": "source (its images fall into other work units)",
}
# The settings ``lgt merge`` takes: the judge labels a sample of the whole build, which no part holds.
JUDGE_SETTINGS = ("judge", "judged_traces", "generation_cache", "cache_only", "engine_args")
# Where a stage's models report what they were asked and what it cost (``Stage.report_key``): added up.
REPORTS = tuple(dict.fromkeys(stage.report_key[0] for stage in STAGES.values() if stage.report_key))


def split_judge(settings: dict) -> tuple[dict, dict]:
    """A build's settings as its parts' (no judge) and the merge's (the judge's, when one is named)."""
    parts = {name: value for name, value in settings.items() if name not in ("judge", "judged_traces")}
    judged = settings.get("judge") is not None
    return parts, {name: settings[name] for name in JUDGE_SETTINGS if name in settings} if judged else {}


class MergeError(ValueError):
    """Parts that do not make one build together; the message is one line saying which and why."""


def read_parts(parts: list[str]) -> list[tuple[str, dict]]:
    """Each part's folder and build record, in part order; ``MergeError`` unless they are all the parts of one
    build, each once, built by the same code with the same settings."""
    found = []
    for part in parts:
        path = os.path.join(part, BUILD_INFO_FILE)
        try:
            with open(path, encoding="utf-8") as f:
                info = json.load(f)
        except FileNotFoundError:
            raise MergeError(f"{part}: not a built part (no {BUILD_INFO_FILE}); build it with --shard I/N") from None
        except json.JSONDecodeError as error:
            raise MergeError(f"{path}: not valid JSON ({error})") from None
        if "shard" not in info:
            raise MergeError(f"{part} is a whole build, not a part of one (it was built without --shard)")
        found.append((part, info))
    first_part, first = found[0]
    for part, info in found[1:]:
        for key, what in SAME.items():
            if info.get(key) != first.get(key):
                difference = _difference(first.get(key), info.get(key))
                raise MergeError(
                    f"{part} and {first_part} were built with different {what}{difference}: build every part with "
                    "the same lgt and settings"
                )
    count, by_index = first["shard"][1], {}
    for part, info in found:
        index, of = info["shard"]
        if of != count:
            raise MergeError(f"{part} is part {index}/{of} and {first_part} part of {count}: they are no one build")
        if index in by_index:
            raise MergeError(f"{part} and {by_index[index][0]} are both part {index}/{count}")
        by_index[index] = (part, info)
    missing = [f"{index}/{count}" for index in range(count) if index not in by_index]
    if missing:
        raise MergeError(f"part(s) {', '.join(missing)} missing: the build has {count} parts, {len(parts)} given")
    return [by_index[index] for index in range(count)]


def _difference(a, b) -> str:
    """`` (--writer x vs y)``: what differs between two recorded values, briefly."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys = [key for key in {**a, **b} if a.get(key) != b.get(key)]
        return " (" + "; ".join(f"{key}: {a.get(key)!r} vs {b.get(key)!r}" for key in keys[:3]) + ")"
    return f" ({a!r} vs {b!r})" if len(repr(a)) + len(repr(b)) < 120 else ""


def added(a, b, where: str = ""):
    """Two parts' reports as one: numbers added, dicts key by key; anything else (a model id, a prompt) must agree."""
    if isinstance(a, dict) and isinstance(b, dict):
        merged = {
            key: added(a[key], b[key], f"{where}.{key}") if key in a and key in b else a.get(key, b.get(key))
            for key in {**a, **b}
        }
        if where.endswith("rejects") and all(type(v) is int for v in merged.values()):
            merged = dict(sorted(merged.items(), key=lambda item: (-item[1], item[0])))  # most common first
        return merged
    if type(a) in (int, float) and type(b) in (int, float):
        return round(a + b, 2) if float in (type(a), type(b)) else a + b
    if a != b:
        raise MergeError(f"the parts' reports differ at {where.lstrip('.')}: {a!r} vs {b!r}; build them alike")
    return a


def merge(
    parts: list[str],
    output: str = "lgt",
    strict: bool = False,
    repo_id: str | None = None,
    private: bool = False,
    revision: str | None = None,
    **judge,
) -> dict:
    """Merge the built ``parts`` (folders) into ``output``; return the build info, as ``build`` does.

    ``judge``: the settings of ``JUDGE_SETTINGS`` (``judge="BACKEND:MODEL"`` has the judge label a sample of the
    merged traces); ``strict``: fail when a blind reader answers a skill too well. ``MergeError`` (one line) for
    parts that are not one build; the output is staged and swapped in whole, as ``lgt build`` writes it.
    ``repo_id``: the Hub dataset repo the parts were pushed to (``lgt push PART``): the merged card, build record
    and preview are committed to it, last (``hub.push_card``).
    """
    check_names(judge)
    extra = set(judge) - set(JUDGE_SETTINGS)
    if extra:
        raise TypeError(f"lgt merge takes the judge's settings only ({', '.join(JUDGE_SETTINGS)}), not {extra}")
    started = time.time()
    found = read_parts(list(parts))
    records = [record for _, record in found]
    first = records[0]
    arguments = first["arguments"]
    judged = LGTConfig(name=first["configs"][0], seed=arguments["seed"], **judge)  # checked before any writing
    output = os.path.realpath(output)
    with staged_output(output, BUILD_INFO_FILE) as staging:
        for part, _ in found:
            _gather(part, staging.folder)
        _check_complete(staging.folder, first)
        info = {
            **{key: first[key] for key in ("lgt_version", "lgt_code", "datasets_version")},
            "arguments": {**arguments, **_judge_record(judged)},
            "configs": first["configs"],
            "rows": {config: count_rows(staging.folder, config) for config in first["configs"]},
            "num_bytes": added_all([record["num_bytes"] for record in records]),
            "source": first["source"],
            "rejects": sum(record["rejects"] for record in records),
            "units": first["units"],
            "parts": len(found),
            **({"repo_id": repo_id} if repo_id else {}),
        }
        for key in REPORTS:
            reports = [record[key] for record in records if key in record]
            if reports:
                info[key] = added_all(reports, key)
        screened = [record.get("decontamination") for record in records]
        if any(screened):
            info["decontamination"] = screened_report(_same_screening(screened))
        rejects = [reject for part, _ in found for reject in _read_jsonl(rejects_path(part))]
        # The parts' seconds added up (the machine time of the build), and the merge's own.
        spent = sum(record["seconds"] for record in records)
        complete(staging.folder, output, info, rejects, strict, judged, started, spent, names=first[OBJECT_NAMES_KEY])
        report = None
        if arguments["on_error"] == "skip":
            report = staging.path("rejects.jsonl")
            with open(report, "w", encoding="utf-8") as f:
                f.writelines(json.dumps(reject) + "\n" for reject in rejects)
        staging.commit({rejects_path(output): report})
    logger.info(f"merged {len(found)} parts into {output}")
    if repo_id:
        push_card(output, repo_id, private, revision)
    return info


def _same_screening(reports: list[dict | None]) -> list[dict]:
    """The parts' decontamination reports, ``MergeError`` unless all screened against the same benchmarks alike (the
    benchmark files are local paths, which the build record leaves out; what they held is in the report)."""
    same = ("benchmarks", "question_rule", "image_rule")
    if not all(reports) or any({k: r[k] for k in same} != {k: reports[0][k] for k in same} for r in reports):
        raise MergeError("the parts were screened against different benchmarks (--benchmark): build them alike")
    return reports


def added_all(reports: list, where: str = ""):
    merged = reports[0]
    for report in reports[1:]:
        merged = added(merged, report, where)
    return merged


def _gather(part: str, folder: str) -> None:
    """Link (else copy) every parquet file of ``part`` into ``folder`` under the same name; a name two parts both
    hold means they overlap, which parts of one build never do."""
    for path in sorted(glob.glob(os.path.join(glob.escape(part), "*", "*-of-*.parquet"))):
        target = os.path.join(folder, os.path.relpath(path, part))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if os.path.lexists(target):
            raise MergeError(f"{path}: another part holds {os.path.relpath(path, part)} too; the parts overlap")
        try:
            os.link(path, target)
        except OSError:  # another filesystem, or one without hard links
            shutil.copyfile(path, target)


def _check_complete(folder: str, first: dict) -> None:
    """``MergeError`` unless every config has every file of every split's units (each part writes all of its own)."""
    for config in first["configs"]:
        for split, units in first["units"].items():
            names = {os.path.basename(path) for path in split_files(folder, config, split)}
            expected = {f"{split}-{unit:05d}-of-{units:05d}.parquet" for unit in range(units)}
            if names != expected:
                absent = sorted(expected - names) or sorted(names - expected)
                raise MergeError(f"{config}: {absent[0]} and {len(absent) - 1} other file(s) are missing or extra")


def _judge_record(judged: LGTConfig) -> dict:
    """What the merged build's record adds for a judge given to the merge (as ``build`` records it)."""
    kept = recorded(judged)
    return {key: kept[key] for key in ("judge", "judged_traces")} if judged.judge else {}


def _read_jsonl(path: str) -> list[dict]:
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


__all__ = ["JUDGE_SETTINGS", "MergeError", "merge", "read_parts", "split_judge"]
