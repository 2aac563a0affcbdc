"""The `lgt` command line: help, version, env, defaults in --help, and status/progress output that obeys -q and
HF_DATASETS_DISABLE_PROGRESS_BARS."""

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys

import datasets
import pytest
from lgt import __version__
from lgt.cli import main


def test_bare_lgt_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    assert out.startswith("usage: lgt") and all(command in out for command in ("build", "push", "env"))


def test_version(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert exit.value.code == 0 and capsys.readouterr().out.strip() == f"lgt {__version__}"


def test_env_lists_the_versions_a_bug_report_needs(capsys):
    assert main(["env"]) == 0
    lines = dict(line[2:].split(": ", 1) for line in capsys.readouterr().out.splitlines())
    assert lines["lgt"] == __version__ and lines["datasets"] == datasets.__version__
    assert lines["pyarrow"] == importlib.metadata.version("pyarrow") and lines["python"].count(".") == 2
    assert {"platform", "huggingface_hub", "pillow", "numpy", "torch", "transformers", "trl"} <= set(lines)
    assert {"accelerate", "peft", "openai", "vllm", "playwright"} <= set(lines)  # training, serving, the explorer


def test_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["build", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for default in ("(default: scenes)", "(default: embed)", "(default: raise)", "(default: lgt)", "(default: 0)"):
        assert default in text
    assert "(default: None)" not in text and "--max-pixels" in text


def _lgt(*args, cwd, **env):
    lgt = shutil.which("lgt", path=os.path.dirname(sys.executable)) or shutil.which("lgt")
    assert lgt, "the `lgt` console script is not installed"
    environment = {k: v for k, v in os.environ.items() if k != "HF_DATASETS_DISABLE_PROGRESS_BARS"}
    return subprocess.run(
        [lgt, *args], cwd=cwd, capture_output=True, text=True, timeout=300, env={**environment, **env}
    )


def test_cli_end_to_end_with_status_and_progress_on_stderr(tmp_path):
    """The installed console script, as a user runs it: results on stdout, status and progress bars on stderr."""
    result = _lgt("build", "--num-images", "8", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert 'load_dataset("lgt", "mcq_stage1")' in result.stdout and "lgt: Preparing scenes" not in result.stdout
    assert "lgt: Preparing scenes" in result.stderr and "Reading scenes: " in result.stderr
    assert (tmp_path / "lgt" / "lgt_build.json").is_file()


def test_progress_bars_obey_the_datasets_switch_and_quiet_silences_status(tmp_path):
    plain = _lgt("build", "--num-images", "4", "--output", "a", cwd=tmp_path, HF_DATASETS_DISABLE_PROGRESS_BARS="1")
    assert plain.returncode == 0, plain.stderr
    assert "lgt: Preparing scenes" in plain.stderr and "Reading scenes" not in plain.stderr
    assert "examples/s" not in plain.stderr
    quiet = _lgt("build", "--num-images", "4", "--output", "b", "-q", cwd=tmp_path)
    assert quiet.returncode == 0 and quiet.stderr == "" and "wrote" in quiet.stdout


@pytest.mark.parametrize("argv", [["build", "--help"], ["env"]])
def test_a_closed_pipe_ends_quietly(argv):
    """`lgt ... | head`: the reader goes away before lgt writes; no traceback on stderr."""
    read, write = os.pipe()
    os.close(read)  # the reader is gone before lgt writes a byte
    lgt = subprocess.run([sys.executable, "-m", "lgt.cli", *argv], stdout=write, stderr=subprocess.PIPE, timeout=120)
    os.close(write)
    stderr = lgt.stderr.decode()
    assert lgt.returncode in (0, 1) and "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr


def test_python_m_lgt_cli_says_lgt_as_the_console_script_does(tmp_path):
    """As `python -m lgt.cli` the module's logger was `__main__`'s, outside lgt's: its lines lost their prefix."""
    missing = tmp_path / "missing.jsonl"
    for command in ([sys.executable, "-m", "lgt.cli"], [shutil.which("lgt", path=os.path.dirname(sys.executable))]):
        ran = subprocess.run([*command, "build", "--source", f"jsonl:{missing}"], capture_output=True, text=True)
        assert ran.returncode == 2 and ran.stderr.splitlines()[-2].startswith(f"lgt: error: {missing}"), ran.stderr


def test_a_build_prints_at_most_a_screenful(tmp_path):
    """Progress bars off, a build's stderr fits a terminal: one status line per step, the per-work-unit detail (SFT
    balance) only with -v. With that detail at info level, 120 images printed 27 lines, the default 1,000 107."""
    result = _lgt("build", "--num-images", "120", cwd=tmp_path, HF_DATASETS_DISABLE_PROGRESS_BARS="1")
    assert result.returncode == 0, result.stderr
    assert len(result.stderr.splitlines()) <= 24, result.stderr


def test_worker_processes_add_no_lines_about_datasets_shards(tmp_path):
    """With --num-proc 2, datasets printed "Setting num_proc from 2 back to 1 for the test split ... as it only
    contains one shard" for every split of a work unit or fewer: three lines per config of a small build."""
    result = _lgt(
        "build", "--num-images", "12", "--num-proc", "2", cwd=tmp_path, HF_DATASETS_DISABLE_PROGRESS_BARS="1"
    )
    assert result.returncode == 0, result.stderr
    assert "num_proc" not in result.stderr and "shard" not in result.stderr, result.stderr
    assert sum(json.loads((tmp_path / "lgt" / "lgt_build.json").read_text())["rows"]["scenes"].values()) == 12
