"""`python -m benchmarks [SCENARIO...] [--runs N] [--quick | --full]`: run, print a table, append results.jsonl.

See benchmarks/README.md for what each scenario measures and the targets.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from benchmarks.harness import BenchError, temp_root
from benchmarks.revision import revision
from benchmarks.scenarios import DEFAULT, FULL, QUICK, SCENARIOS, Fixtures, figures_for, python_version, scenario_notes

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results.jsonl"


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds every `with grid()`, so the brokers and workers it started stop


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument(
        "scenarios", nargs="*", metavar="SCENARIO", help=f"any of: {', '.join(SCENARIOS)} (default all)"
    )
    parser.add_argument("--runs", type=int, help="runs per scenario; the table shows medians (default 3, --quick 1)")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small sizes, one run: a smoke test in ~2 minutes")
    size.add_argument("--full", action="store_true", help="also the 1,000,000-job sizes (slow)")
    parser.add_argument("--no-save", action="store_true", help="do not append to benchmarks/results.jsonl")
    args = parser.parse_args(argv)
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    sizes = QUICK if args.quick else FULL if args.full else DEFAULT
    runs = args.runs or (1 if args.quick else 3)
    chosen = [SCENARIOS[s] for s in (args.scenarios or list(SCENARIOS))]

    meta = {
        **revision(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"nproc": os.cpu_count(), "python": python_version(), "platform": sys.platform},
        "mode": sizes.mode,
    }
    if os.environ.get("GRIDD_BENCH_WORKER"):
        meta["worker_override"] = os.environ["GRIDD_BENCH_WORKER"]
        print(f"NOTE: workers started as $GRIDD_BENCH_WORKER = {meta['worker_override']}")
    print(
        f"gridd benchmarks: {meta['git']}{' (gridd/ modified)' if meta['dirty'] else ''}, mode {sizes.mode}, "
        f"{runs} run(s), {meta['machine']['nproc']} cores, Python {meta['machine']['python']}",
        flush=True,
    )

    rows: list[list[str]] = []
    records: list[dict[str, Any]] = []
    t_all = time.perf_counter()
    with temp_root("gridd-bench-fixtures-") as fixture_root:
        fixtures = Fixtures(fixture_root)
        for scenario in chosen:
            figures = figures_for(scenario, sizes)
            per_run: list[dict[str, float]] = []
            errors: list[str] = []
            t0 = time.perf_counter()
            for i in range(runs):
                print(f"  {scenario.name}: run {i + 1}/{runs} ...", end="", flush=True)
                t_run = time.perf_counter()
                try:
                    result = scenario.run(sizes, fixtures)
                    partial = result.pop("_error", None)
                    per_run.append(result)
                    if partial:  # the peers were measured, gridd was not
                        raise BenchError(str(partial))
                    print(f" {time.perf_counter() - t_run:.1f}s", flush=True)
                except BenchError as exc:
                    errors.append(str(exc))
                    print(f" FAILED: {exc}", flush=True)
                except Exception as exc:  # noqa: BLE001 - one scenario's crash must not lose the others
                    errors.append(f"{type(exc).__name__}: {exc}")
                    print(f" CRASHED: {type(exc).__name__}: {exc}", flush=True)
                    traceback.print_exc(limit=6)
            record_figs: dict[str, Any] = {}
            for fig in figures:
                values = [r[fig.key] for r in per_run if fig.key in r]
                median = statistics.median(values) if values else None
                ratios = [r[fig.key] / r[fig.peer] for r in per_run if fig.peer and fig.key in r and r.get(fig.peer)]
                ratio = statistics.median(ratios) if ratios else None
                peer_values = [r[fig.peer] for r in per_run if fig.peer and fig.peer in r]
                peer_median = statistics.median(peer_values) if peer_values else None
                met = None if fig.ok is None or median is None else bool(fig.ok(median, ratio))
                record_figs[fig.key] = {
                    "label": fig.label,
                    "unit": fig.unit,
                    "runs": values,
                    "median": median,
                    "peer": fig.peer,
                    "peer_median": peer_median,
                    "ratio": ratio,
                    "target": fig.target or None,
                    "met": met,
                }
                rows.append(
                    [
                        scenario.name,
                        fig.label,
                        fig.unit,
                        _fmt(median),
                        "" if not fig.peer else f"{_label(figures, fig.peer)} {_fmt(peer_median)}",
                        "" if ratio is None else f"{ratio:.2f}x",
                        fig.target,
                        "" if met is None else ("ok" if met else "MISSED"),
                    ]
                )
            for err in errors:
                rows.append(
                    [
                        scenario.name,
                        f"ERROR: {err[:90]}..." if len(err) > 90 else f"ERROR: {err}",
                        "",
                        "",
                        "",
                        "",
                        "",
                        "FAILED",
                    ]
                )
            notes = scenario_notes(scenario)
            records.append(
                {
                    "scenario": scenario.name,
                    "about": scenario.about,
                    "figures": record_figs,
                    "runs": runs,
                    "runs_ok": runs - len(errors),
                    "errors": errors,
                    "notes": notes,
                    "sizes": {k: v for k, v in vars(sizes).items() if k != "mode"},
                    "seconds": round(time.perf_counter() - t0, 1),
                    **meta,
                }
            )
    print()
    _print_table(["scenario", "figure", "unit", "gridd (median)", "vs (same run)", "ratio", "target", ""], rows)
    for rec in records:
        for note in rec["notes"]:
            print(f"note [{rec['scenario']}]: {note}")
    print(f"total {time.perf_counter() - t_all:.0f}s")
    if not args.no_save:
        with RESULTS.open("a") as f:
            for rec in records:
                f.write(json.dumps(rec, sort_keys=True) + "\n")
        print(f"appended {len(records)} line(s) to {RESULTS.relative_to(HERE.parent)}")
    return 1 if any(rec["errors"] for rec in records) else 0


def _label(figures: list[Any], key: str) -> str:
    for fig in figures:
        if fig.key == key:
            return str(fig.label)
    return key


def _print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    print(line)
    print("-+-".join("-" * w for w in widths))
    for row in rows:
        print(" | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))


if __name__ == "__main__":
    sys.exit(main())
