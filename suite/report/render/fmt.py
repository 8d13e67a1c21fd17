"""Human-readable numbers: times in µs/ms/s, memory in KiB/MiB/GiB, the rest with four significant digits."""

from __future__ import annotations

import math

_TIME_UNITS = ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns"))
_BYTE_UNITS = ((1024.0**3, "GiB"), (1024.0**2, "MiB"), (1024.0, "KiB"), (1.0, "B"))


def kind(metric: str) -> str:
    if metric.endswith("_bytes"):
        return "bytes"
    if metric.endswith("_s") and (metric.startswith("time_") or metric == "compile_s"):
        return "time"
    return "plain"


def _unit(metric: str, magnitude: float) -> tuple[float, str]:
    table = {"time": _TIME_UNITS, "bytes": _BYTE_UNITS}.get(kind(metric))
    if table is None:
        return 1.0, ""
    magnitude = abs(magnitude)
    for scale, name in table:
        if magnitude >= scale:
            return scale, name
    return table[-1] if magnitude > 0 else table[0] if kind(metric) == "time" else (1.0, "B")


def _num(x: float, sig: int = 4) -> str:
    if x == 0:
        return "0"
    if abs(x) >= 1e5 or abs(x) < 1e-2:
        return f"{x:.{sig - 1}e}"
    if abs(x) >= 10**sig:
        return f"{x:.0f}"
    return f"{x:.{sig}g}"


def value(metric: str, x: float | None) -> str:
    """One value with its unit (``–`` for a missing one)."""
    if x is None or not math.isfinite(x):
        return "–"
    scale, unit = _unit(metric, x)
    if kind(metric) == "bytes" and unit == "B":
        return f"{x:.0f} B"
    return f"{_num(x / scale)} {unit}".rstrip()


def mean_std(metric: str, mean: float, std: float, n: int) -> str:
    """``mean ± std unit (n)`` in the mean's unit; ``mean unit (1)`` for one value."""
    if n == 0 or not math.isfinite(mean):
        return "–"
    scale, unit = _unit(metric, mean)
    if kind(metric) == "bytes" and unit == "B":
        body = f"{mean:.0f}" + (f" ± {std:.0f}" if math.isfinite(std) else "")
    else:
        body = _num(mean / scale) + (f" ± {_num(std / scale, 2)}" if math.isfinite(std) else "")
    return f"{body} {unit} ({n})".replace("  ", " ")


def knob(x: object) -> str:
    """A config value as shown in labels: integral floats without ``.0`` (``100.0`` → ``100``), others as ``%g``."""
    if isinstance(x, float) and not isinstance(x, bool):
        return str(int(x)) if x.is_integer() and abs(x) < 1e6 else f"{x:g}"
    return str(x)


def ratio(x: float) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.3g}×"


def interval(lo: float, hi: float, fmt=lambda v: f"{v:.3g}") -> str:
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return "no interval"
    return f"[{fmt(lo)}, {fmt(hi)}]"


def short(text: str | None, limit: int = 160) -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
