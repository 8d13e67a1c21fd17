"""The installed distribution keeps everything under ``mlo_bench``: a user's own ``tasks`` / ``suite`` packages on the
path neither break the suite nor get broken by it."""

from __future__ import annotations

import os
import subprocess
import sys


def _user_packages(root):
    for name in ("tasks", "suite", "methods", "backends"):
        pkg = root / name
        pkg.mkdir()
        (pkg / "__init__.py").write_text(f"OWNER = 'user-{name}'\n")


def test_user_packages_named_like_the_suite_folders_coexist(tmp_path):
    _user_packages(tmp_path)
    code = (
        "import tasks, suite\n"
        "from mlo_bench.suite import registry\n"
        "assert tasks.OWNER == 'user-tasks' and suite.OWNER == 'user-suite', (tasks, suite)\n"
        "assert {'quadratic', 'mwn'} <= set(registry.names('task')), registry.names('task')\n"
        "assert 'cg' in registry.names('method')\n"
        "import tasks as again\n"
        "assert again.OWNER == 'user-tasks'\n"
        "print('ok')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_a_run_works_from_a_folder_holding_a_tasks_package(tmp_path):
    _user_packages(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-m", "mlo_bench.suite.cli", "run", "task.d=4", "steps=2", "isolate=true", "progress=false",
         f"results_dir={tmp_path / 'results'}"],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert list((tmp_path / "results" / "runs").glob("*/record.json"))


def test_the_distribution_installs_one_top_level_package():
    from importlib import metadata

    top = metadata.distribution("mlo-bench").read_text("top_level.txt")
    assert top is not None and top.split() == ["mlo_bench"]
