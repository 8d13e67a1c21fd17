"""The precision matrix's records as one table: task × backend × method × precision → hypergradient error and cosine,
measured peak memory beside the counted live bytes, time per step, fp16's skipped steps.

``python benchmarks/precision_table.py RESULTS_DIR`` (``benchmarks/gpu_check.sh`` calls it): on CUDA the measured
figure is ``max_memory_allocated`` (``memory_kind`` ``cuda_allocated``; jax: ``jax_device``), beside
``peak_live_bytes`` counted by the backend; on CPU the measured figure is the RSS delta.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mlo_bench.suite.report.tidy import precision_label
from mlo_bench.suite.run.records import iter_record_paths, read_records


def _num(value, scale: float = 1.0, fmt: str = ".3g") -> str:
    return "–" if not isinstance(value, int | float) else format(value * scale, fmt)


def rows(results_dir: Path) -> list[list[str]]:
    out = []
    for record in read_records(iter_record_paths([results_dir])):
        m = record.get("metrics") or {}
        skipped = "–" if "overflows_inner" not in m else f"{m['overflows_inner']:g}/{m['overflows_hypergrad']:g}"
        out.append([str(record.get("task")), str(record.get("backend")), str(record.get("method")),
                    precision_label((record.get("config") or {}).get("precision")), str(record.get("status")),
                    _num(m.get("hypergrad_rel_error")), _num(m.get("hypergrad_cosine"), fmt=".4f"),
                    f"{_num(m.get('peak_memory_bytes'), 2**-20, '.2f')} MiB ({m.get('memory_kind', '?')})",
                    f"{_num(m.get('peak_live_bytes'), 2**-20, '.3f')} MiB", f"{_num(m.get('time_step_s'), 1e3)} ms",
                    skipped])
    return sorted(out)


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not Path(argv[0]).is_dir():
        print("usage: python benchmarks/precision_table.py RESULTS_DIR", file=sys.stderr)
        return 2
    header = ["task", "backend", "method", "precision", "status", "hg error", "cosine", "measured peak",
              "counted live", "step", "skipped inner/hg"]
    table = [header, *rows(Path(argv[0]))]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for r in table:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    return 0 if len(table) > 1 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
