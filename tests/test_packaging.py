"""The package as installed: an editable install keeps importing `lgt` from a folder that holds a built `lgt/`."""

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_a_built_lgt_folder_does_not_shadow_the_package(builtin_build, tmp_path):
    """`lgt build` writes `./lgt/`, which Python takes for a namespace package `lgt` before the import hook of a
    (default, "lenient") editable install is asked; setup.cfg makes editable installs link a real package instead.

    Checked twice from the folder that holds a build: with this environment's own install, and with a fresh
    editable install of a copy of the project (``-S``: nothing but that install on the path).
    """
    work = builtin_build[0].parent
    assert (work / "lgt" / "README.md").is_file()
    result = subprocess.run(
        [sys.executable, "-c", "from lgt.build import build; from lgt.cli import main"],
        cwd=work,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr

    project = tmp_path / "project"
    for package in ("dataset_builder", "eval"):  # lgt and lgt.eval
        shutil.copytree(REPO / package, project / package, ignore=shutil.ignore_patterns("*.pyc"))
    for name in ("setup.cfg", "pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, project / name)
    prefix = tmp_path / "prefix"
    pip = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "-q",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "--ignore-installed",
    ]
    install = subprocess.run([*pip, "--prefix", str(prefix), "-e", str(project)], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr
    site = next(prefix.glob("lib/python*/site-packages"))
    code = (
        f"import site; site.addsitedir({str(site)!r}); import importlib.util, lgt.scene, lgt; print(lgt.__file__); "
        "print(importlib.util.find_spec('lgt.eval').origin)"
    )
    result = subprocess.run([sys.executable, "-S", "-c", code], cwd=work, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    package, evaluation = (Path(line).resolve() for line in result.stdout.split())
    assert package == project / "dataset_builder" / "__init__.py" and evaluation == project / "eval" / "__init__.py"
