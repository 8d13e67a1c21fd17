"""The short summary printed after a run."""

from __future__ import annotations

from typing import Any


def _fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def _fmt_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def summary_lines(record: dict[str, Any]) -> list[str]:
    m = record["metrics"]
    cfg = record["config"]
    used = record["provenance"].get("device")
    # the device the run used; a run that stopped before its backend was set up used none (never the asked value)
    device = f"device {used}" if used else f"no device set up (device={cfg.get('device')} asked)"
    head = (f"{record['task']} × {record['backend']} × {record['method']}  "
            f"(seed {record['seed']}, {cfg.get('dtype')}, {device})")
    lines = [head, f"  status               {record['status']}" + (f": {record['reason']}" if record["reason"] else "")]
    if record["status"] == "ok" or m.get("steps_done"):
        if m.get("outer_loss") is not None:
            lines.append(f"  outer_loss           {m['outer_loss']:.6g}")
        for key in ("hypergrad_rel_error", "hypergrad_cosine"):
            if m.get(key) is not None:
                lines.append(f"  {key:<20} {m[key]:.3e}")
        if m.get("hypergrad_nonfinite"):
            lines.append(f"  hypergradient        non-finite at the check ({m['hypergrad_nonfinite']:.0f} entries)")
        lines.append(
            "  time per outer step  "
            f"inner {_fmt_time(m.get('time_inner_s'))}, hypergrad {_fmt_time(m.get('time_hypergrad_s'))}, "
            f"outer {_fmt_time(m.get('time_outer_s'))}  (median after warm-up)"
        )
        compile_s = m.get("compile_s")
        lines.append(
            f"  total                {_fmt_time(m.get('time_total_s'))} for {m.get('steps_done')} steps"
            + (f"; compile {_fmt_time(compile_s)} (apart)" if compile_s else "")
        )
        lines.append(f"  peak memory          {_fmt_bytes(m.get('peak_memory_bytes'))} ({m.get('memory_kind')})")
        if m.get("flops_hypergrad") is not None or m.get("peak_live_bytes") is not None:
            flops = m.get("flops_hypergrad")
            lines.append(f"  counted              {'-' if flops is None else f'{flops:.4g}'} FLOP per hypergradient; "
                         f"peak live {_fmt_bytes(m.get('peak_live_bytes'))} per outer step")
    lines.append(f"  record               {record.get('_path')}")
    return lines


def print_summary(record: dict[str, Any]) -> None:
    print("\n".join(summary_lines(record)), flush=True)
