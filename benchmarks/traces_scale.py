"""Scripted traces at scale: the SFT and DPO path of a build of N images, its time, memory and trace audit.

    python benchmarks/traces_scale.py                     # 20,000 images: stage 1, then stage 2
    python benchmarks/traces_scale.py --images 5000       # a smaller one

The scenes are `stage1_scale.py`'s (≈7 objects of 4-7 of 80 categories per image, `--images path`), whose category
names ("category 12") hold numbers, as a detector's or a user's vocabulary may. Each build runs `lgt build` in a
child process and reports its wall time, the peak RSS of its process tree and of its largest process (the audit and
the card read every trace: at 20,000 images, 2.4 GB before they read in batches), and every line of the trace audit
over its bar, with the pair readers and the share of the 50 commonest sentence templates that sit closest to theirs.
"""

from __future__ import annotations

import argparse
import os
import shutil

from stage1_scale import HERE, run_build, write_annotations

BUILDS = {
    "stage 1": "traces_stage1,dpo_stage1,sft_stage1",
    "stage 2": "mcq_stage2,traces_stage2,dpo_stage2",
}


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--images", type=int, default=20_000)
    cli.add_argument("--num-proc", type=int, default=2)
    cli.add_argument("--work-dir", default=os.path.join(HERE, "_work"))
    args = cli.parse_args()
    os.makedirs(args.work_dir, exist_ok=True)
    annotations = os.path.join(args.work_dir, f"scenes-{args.images}.jsonl")
    if not os.path.exists(annotations):
        write_annotations(annotations, args.images)
    for name, configs in BUILDS.items():
        output = os.path.join(args.work_dir, "traces-out")
        shutil.rmtree(output, ignore_errors=True)
        result = run_build(annotations, output, args.num_proc, configs)
        audit = result["info"]["trace_audit"]
        rows = {config: sum(counts.values()) for config, counts in result["info"]["rows"].items()}
        print(
            f"{name}: {args.images:,} images, {result['wall_s']:.1f} s, peak RSS {result['peak_rss_tree_mb']:,.0f} MB "
            f"(largest process {result['peak_rss_single_mb']:,.0f} MB); rows "
            + ", ".join(f"{config} {count:,}" for config, count in rows.items()),
            flush=True,
        )
        for config, lines in audit["configs"].items():
            said = []
            if "diversity" in lines:
                said.append(f"top-50 templates {100 * lines['diversity']['top_share']:.1f}% (bar 35%)")
                said.append(f"early answers {lines['early_answers']['named_early']} (bar 0)")
            if "steps" in lines:
                said.append(f"steps naming the gold {100 * lines['steps']['share']:.1f}% (bar 5%)")
            judged = {group: found for group, found in lines.get("pairs", {}).items() if found["judged"]}
            if judged:
                group = max(judged, key=lambda group: judged[group]["reader"])
                said.append(f"best pair reader {100 * judged[group]['reader']:.1f}% on {group} (bar 60%)")
            print(f"  {config}: {'; '.join(said)}", flush=True)
        print(f"  flagged: {', '.join(audit['flagged']) or 'nothing'}", flush=True)
        shutil.rmtree(output, ignore_errors=True)


if __name__ == "__main__":
    main()
