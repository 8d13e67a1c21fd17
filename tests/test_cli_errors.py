"""Bad input is one line naming the key and what was expected, exit 2, before any work (issue 24 part 3); and the exit
codes of sweeps and ``verify`` (part 4)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlo_bench.suite.certify.verify import verdict
from mlo_bench.suite.cli.callbacks import sweep_exit_code
from mlo_bench.suite.cli.commands import main
from mlo_bench.suite.plugins import registry, variants

SMALL = ["task.d=5", "steps=2", "progress=false", "isolate=false"]


def _one_line(capsys, code: int) -> str:
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if not ln.startswith("warning: load average")]
    assert len(lines) == 1, err
    return lines[0]


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlo_bench.suite.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "CI": "true"})


@pytest.mark.parametrize("below", [False, True], ids=["the-file", "under-the-file"])
def test_results_dir_that_is_a_file_is_one_line(capsys, tmp_path, below):
    plain = tmp_path / "plain"
    plain.write_text("not a directory\n")
    target = plain / "sub" if below else plain
    line = _one_line(capsys, main(["run", *SMALL, f"results_dir={target}"]))
    assert f"results_dir={target}" in line and "not a directory" in line
    assert plain.read_text() == "not a directory\n" and sorted(tmp_path.iterdir()) == [plain]


def test_an_unknown_launcher_is_one_line_listing_the_launchers(capsys, tmp_path):
    line = _one_line(capsys, main(["run", "-m", "hydra/launcher=nosuch", *SMALL, f"results_dir={tmp_path}"]))
    assert "hydra/launcher 'nosuch'" in line and "basic" in line
    assert not any(tmp_path.iterdir())


def test_verify_says_an_unknown_task_as_run_says_it(capsys, tmp_path):
    run_line = _one_line(capsys, main(["run", "task=nosuch", f"results_dir={tmp_path}"]))
    verify_line = _one_line(capsys, main(["verify", "task=nosuch"]))
    assert verify_line.split("error: ", 1)[1] == run_line.split("error: ", 1)[1]
    assert "unknown task 'nosuch'" in verify_line and "quadratic" in verify_line


def test_an_unknown_variant_lists_only_the_chosen_tasks_variants(capsys, tmp_path):
    line = _one_line(capsys, main(["run", "task=mwn", "variant=nosuch", f"results_dir={tmp_path}"]))
    tasks = {n: registry.get("task", n) for n in registry.names("task")}
    own = {v.name for v in variants.declared(tasks["mwn"])}
    listed = set(line.split("mwn's variants: ", 1)[1].split(", "))
    assert listed == own and "'nosuch'" in line
    others = set(variants.names(tasks)) - own
    assert others and not any(f" {name}," in line or line.endswith(f" {name}") for name in others)


def test_another_tasks_variant_says_whose_it_is(capsys, tmp_path):
    line = _one_line(capsys, main(["run", "task=mwn", "variant=lbi", f"results_dir={tmp_path}"]))
    assert "variant 'lbi' is not one of mwn's (it is domain_adaptation's)" in line
    assert "mwn's variants: " in line and "Could not find" not in line


@pytest.mark.parametrize("args,key", [(["seed=0", "seed=1"], "seed"), (["task.d=5", "task.d=6"], "task.d"),
                                      (["+preset=demo", "preset=demo", "task=mwn"], "preset")])
def test_a_key_given_twice_is_an_error_naming_it(capsys, tmp_path, args, key):
    line = _one_line(capsys, main(["run", *args, f"results_dir={tmp_path}"]))
    assert f"{key} is given twice" in line
    line = _one_line(capsys, main(["verify", *args]))
    assert f"{key} is given twice" in line
    assert not any(tmp_path.iterdir())


def test_an_empty_sweep_is_one_line_and_exit_2(tmp_path):
    proc = cli("run", "-m", "seed=range(0)", *SMALL, f"results_dir={tmp_path / 'r'}", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "seed=range(0)" in lines[0] and "no runs" in lines[0]
    assert not (tmp_path / "r").exists()


def test_a_sweep_with_a_failed_run_exits_1_with_one_closing_line(tmp_path):
    proc = cli("run", "-m", "task.outer.lr=0.01,1000", "task.d=5", "steps=5", "progress=false", "isolate=false",
               f"results_dir={tmp_path}", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr[-2000:]
    closing = [ln for ln in proc.stdout.splitlines() if ln.startswith("sweep finished")]
    assert closing == ["sweep finished: 2/2 runs — ok 1, diverged 1; exit 1: 1 run(s) failed"]


def test_the_sweep_exit_code_rule():
    assert sweep_exit_code({"ok": 3}) == 0
    assert sweep_exit_code({"ok": 3, "unsupported": 2, "skipped": 1}) == 0  # planned outcomes, like pytest's skips
    for status in ("diverged", "oom", "timeout", "error", "interrupted"):
        assert sweep_exit_code({"ok": 3, status: 1}) == 1
    assert sweep_exit_code({"ok": 3}, missing=1) == 1  # a job that never reported
    assert sweep_exit_code({"ok": 1, "busy": 1}) == 3
    assert sweep_exit_code({"diverged": 1, "busy": 1}) == 1


def test_verify_leaves_known_library_bugs_out_of_the_exit_status_unless_strict():
    code, line = verdict(0, ["betty cg"], 0, 5, 1e-6)
    assert code == 0 and "betty cg" in line and "not counted (--strict counts them)" in line
    code, line = verdict(0, ["betty cg"], 0, 5, 1e-6, strict=True)
    assert code == 1 and "1 of 5" in line and "counted (--strict)" in line
    code, line = verdict(1, ["betty cg"], 0, 5, 1e-6)
    assert code == 1 and "1 of 5" in line and "not counted" in line  # another failure still fails
    assert verdict(0, [], 1, 5, 1e-6)[0] == 1
    assert verdict(0, [], 0, 5, 1e-6) == (0, "ok: all 5 comparisons within 1e-06")


#: a backend with a declared known bug that really fails: torch computing in float32 whatever the run asks
BUGGY = '''
from mlo_bench.backends.torch import TorchBackend
from mlo_bench.suite.plugins.registry import register


@register("backend")
class BuggyBackend(TorchBackend):
    """torch computing in float32 whatever the run asks: a stand-in for a library with a known bug."""

    name = "buggy"

    def setup(self, dtype, device, seed):
        super().setup("float32", device, seed)

    def known_issue(self, method):
        return "computes in float32 (a stand-in for a released library's bug)" if method == "exact" else None
'''


def test_verify_with_a_fake_known_bug(tmp_path):
    """A plugin backend whose known bug really fails its row: exit 0 by default, 1 with --strict, both said (in a
    process of its own: the plugin is registered for the rest of a process's life)."""
    (tmp_path / "buggy_backend.py").write_text(BUGGY)
    args = ["verify", "plugins=[buggy_backend]", "task.d=3", "dtype=float64", "method=exact", "backend=buggy",
            "--steps", "1", "--tol", "1e-12"]
    script = ("import sys; from mlo_bench.suite.cli.commands import main; "
              f"a = {args!r}; print('codes', main(a), main([*a, '--strict']))")
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "CI": "true", "PYTHONPATH": os.pathsep.join(
                              filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))})
    out = proc.stdout
    assert "codes 0 1" in out, proc.stderr[-2000:]
    assert out.count("FAIL (known library bug, see note)") == 2 and "buggy exact fails as expected" in out
    assert "ok: 0 of 1 comparisons within 1e-12; 1 known library bug(s) (buggy exact) not counted (--strict counts" \
        in out
    assert "FAILED: 1 of 1 comparisons (or reference runs) not within 1e-12; 1 known library bug(s) (buggy exact) " \
        "counted (--strict)" in out
