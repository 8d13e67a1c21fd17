"""Run records: one directory per run, written atomically, and their readers.

A run's files are written into ``<results_dir>/runs/.tmp-<run_id>/`` and the directory is renamed to
``<results_dir>/runs/<run_id>/`` only when complete, so a killed run leaves no partial record (a stale ``.tmp-*``
directory is ignored by readers). The schema is documented in ``results/README.md``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from mlo_bench.suite.conf import keys

SCHEMA_VERSION = 1
STATUSES = ("ok", "diverged", "oom", "timeout", "unsupported", "skipped", "error", "interrupted")
#: the hash rules, read from the run keys' declaration (:mod:`mlo_bench.suite.conf.keys`): the keys left out of the
#: config hash (they change no number a run produces) …
NON_NUMERIC_KEYS = keys.names(keys.UNHASHED)
#: … and the keys added after the first records, which enter the hash only when not at this default (or null), so that
#: a record written before they existed keeps its hash (and is still found by ``resume``): ``plugins`` (third-party
#: modules named by the config: they decide what code a name runs), ``repeat`` (a deliberate repeat of the same
#: config), and contract v2's ``ordering``, ``eval_every`` and ``level_steps``; ``threads`` (a run at the default of 1
#: thread keeps the hash it had before the key existed; other counts are configs of their own: time figures, and float
#: sums, depend on them) and ``fused`` (null: the backend's choice; a forced value is a config of its own)
HASHED_UNLESS_DEFAULT = {name: keys.run_key(name).default for name in keys.names(keys.UNLESS_DEFAULT)}
#: the same for fields of nested config groups, at any depth: an optimizer's ``eps_root``, cg's
#: ``negative_curvature``
NESTED_UNLESS_DEFAULT = keys.NESTED_UNLESS_DEFAULT


def _strip_nested_defaults(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_nested_defaults(v) for k, v in value.items()
                if not (k in NESTED_UNLESS_DEFAULT and v == NESTED_UNLESS_DEFAULT[k]) and k not in keys.NESTED_UNHASHED}
    return value


def config_hash(config: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of the resolved config, each top-level key by its declared hash rule
    (:func:`mlo_bench.suite.conf.keys.in_hash`: without :data:`NON_NUMERIC_KEYS`, without
    :data:`HASHED_UNLESS_DEFAULT` keys at their default or null) and nested fields of
    :data:`NESTED_UNLESS_DEFAULT` at their default left out."""
    relevant = {k: _strip_nested_defaults(v) for k, v in config.items() if keys.in_hash(k, v)}
    blob = json.dumps(relevant, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def write_atomic(path: Path, writer: Callable[[Path], None]) -> Path:
    """Call ``writer(tmp_path)`` on a temporary file beside ``path`` (its folder is made), then rename it onto
    ``path`` (mode 0644): a reader sees the old file or the new one, never a partial one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        writer(Path(tmp))
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: Path, text: str) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_bytes_atomic(path: Path, data: bytes) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_bytes(data))


def write_json_atomic(path: Path, obj: Any) -> Path:
    """Write JSON to ``path`` through a temporary file in the same directory and an atomic rename."""
    text = json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n"
    return write_text_atomic(path, text)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def commit_run(results_dir: Path, run_id: str, record: dict[str, Any],
               files: dict[str, str | bytes] | None = None) -> Path:
    """Write ``record.json`` (and extra files: text or bytes) for ``run_id`` and publish the directory atomically.

    Never overwrites: if ``runs/<run_id>`` exists, a numeric suffix is added and ``record["run_id"]`` updated.
    """
    runs = Path(results_dir) / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=runs, prefix=f".tmp-{run_id}-"))
    try:
        suffix = 0
        while True:
            final_id = run_id if suffix == 0 else f"{run_id}-{suffix}"
            final = runs / final_id
            record["run_id"] = final_id
            for name, content in (files or {}).items():
                if isinstance(content, bytes):
                    (staging / name).write_bytes(content)
                else:
                    (staging / name).write_text(content)
            write_json_atomic(staging / "record.json", record)
            try:
                os.rename(staging, final)  # atomic; fails if ``final`` exists and is not empty
                return final
            except OSError:
                if not final.exists():
                    raise
                suffix += 1
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def iter_record_paths(paths: Iterable[Path]) -> Iterator[Path]:
    """Every ``record.json`` under the given results directories or run directories (staging dirs excluded)."""
    for root in paths:
        root = Path(root)
        if root.is_file():
            yield root
            continue
        for path in sorted(root.rglob("record.json")):
            if not any(part.startswith(".tmp-") for part in path.parts):
                yield path


def record_problem(rec: Any) -> str | None:
    """Why ``rec`` is not a usable run record (one line), or ``None``: a mapping with a ``status`` string, a
    ``metrics`` mapping, a ``config`` mapping (when present) and a ``provenance`` mapping (when present)."""
    if not isinstance(rec, dict):
        return f"not a run record (a JSON {type(rec).__name__}, not an object)"
    if not isinstance(rec.get("status"), str):
        return "not a run record (no status)"
    for key, required in (("metrics", True), ("config", False), ("provenance", False)):
        if (required or key in rec) and not isinstance(rec.get(key), dict):
            return f"not a run record ({key!r} is {type(rec.get(key)).__name__}, not a mapping)"
    return None


def read_records(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """Load records; a corrupt or truncated one (see :func:`record_problem`) is reported by path (a warning) and
    skipped."""
    records = []
    for path in iter_record_paths(paths):
        try:
            with open(path) as fh:
                rec = json.load(fh)
            problem = record_problem(rec)
            if problem:
                raise ValueError(problem)
        except (OSError, ValueError) as exc:
            warnings.warn(f"skipping unreadable record {path}: {exc}", stacklevel=2)
            continue
        rec["_path"] = str(path)
        records.append(rec)
    return records


#: statuses after which re-running the same config would only repeat the same outcome (``error`` and ``interrupted``
#: are run again)
FINAL_STATUSES = ("ok", "diverged", "oom", "timeout", "unsupported", "skipped")


def find_completed(results_dir: str | Path, hash_: str, ignore: tuple[str, ...] = ()) -> dict[str, Any] | None:
    """A complete record in ``results_dir`` with config hash ``hash_`` and a final status (``error`` and
    ``interrupted`` are run again), other than the statuses in ``ignore`` (``skipped`` once the budget admits the
    run); a run that was recorded ``skipped`` and later run is found as run."""
    runs = Path(results_dir) / "runs"
    if not runs.is_dir():
        return None
    found = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for rec in read_records([runs]):
            if rec.get("config_hash") == hash_ and rec.get("status") in FINAL_STATUSES and rec["status"] not in ignore:
                if rec["status"] != "skipped":
                    return rec
                found = found or rec
    return found


#: what ``run_job`` returns (never a record status: nothing is written) when another process holds the config's lock
BUSY = "busy"


class Busy(Exception):
    """Another process holds the lock of this config; the message is one line naming it."""


@contextlib.contextmanager
def config_lock(results_dir: str | Path, hash_: str) -> Iterator[Path]:
    """Hold ``<results_dir>/locks/<hash>.lock`` while the config with hash ``hash_`` runs; raises :class:`Busy`
    (naming the holder: pid, host, start, command) when another process holds it.

    An advisory ``flock`` on the file: the kernel drops it when its holder exits, however it dies (SIGKILL included),
    so a lock left by a dead process is never in the way — its file is simply locked again (stale-lock detection for
    free; the pid, host and start written into the file only name the holder). The holder removes the file when done; a
    process that locked a file just removed by its holder sees the path gone (or another inode there) and starts
    over, so two processes never both hold the lock of one config."""
    import fcntl
    import platform

    locks = Path(results_dir) / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    path = locks / f"{hash_}.lock"
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            try:
                holder = json.loads(path.read_text() or "{}")
            except (OSError, ValueError):
                holder = {}
            who = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} since {holder.get('since', '?')}"
            raise Busy(f"the same config ({hash_[:8]}) is being run by {who} (lock {path})") from None
        try:
            same = os.fstat(fd).st_ino == path.stat().st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # locked a file its holder had just removed: take the current one
    try:
        from mlo_bench.suite.measure.provenance import now

        info = {"pid": os.getpid(), "host": platform.node(), "since": now(),
                "command": " ".join(sys.argv)}
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(info).encode())
        yield path
    finally:
        path.unlink(missing_ok=True)  # while still holding it: a waiter re-checks the inode
        os.close(fd)
