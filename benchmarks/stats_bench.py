"""Cost of recording metrics and of writing one Statistik file, next to plain baselines.

    .venv/bin/python benchmarks/stats_bench.py [--quick]

Prints one table: median and best time per call over several repeats. ``observe`` is called
at every training step, so it must cost microseconds; a file is written once per validation.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import timeit
from collections.abc import Callable
from pathlib import Path

from vsrkit.stats import DEFAULT_TRAINING_FIELDS, DeferredStatsWriter, MetricsSnapshot
from vsrkit.stats.fields import STAT_FIELDS

METRICS = {name: 0.01 * (i + 1) for i, name in enumerate(DEFAULT_TRAINING_FIELDS)}  # 10 floats


def measure(func: Callable[[], object], number: int, repeat: int) -> tuple[float, float]:
    """Median and best seconds per call."""
    times = [t / number for t in timeit.repeat(func, number=number, repeat=repeat)]
    return statistics.median(times), min(times)


def observe_rows(number: int, repeat: int) -> list[tuple[str, str, float, float]]:
    rows = []
    plain: dict[str, float] = {}
    rows.append(("per step", "baseline: dict.update(10 floats)", *measure(
        lambda: plain.update(METRICS), number, repeat)))  # fmt: skip
    stamped: dict[str, tuple[float, int]] = {}

    def stamp() -> None:
        for k, v in METRICS.items():
            stamped[k] = (v, 7)

    rows.append(("per step", "baseline: dict of (value, step), 10 floats", *measure(
        stamp, number, repeat)))  # fmt: skip
    snap = MetricsSnapshot()
    rows.append(("per step", "MetricsSnapshot.update(step, 10 floats)", *measure(
        lambda: snap.update(7, METRICS), number, repeat)))  # fmt: skip
    with tempfile.TemporaryDirectory() as d:
        w = DeferredStatsWriter(d, snapshot=MetricsSnapshot(), max_delay_steps=None,
                                max_delay_seconds=None)  # fmt: skip
        rows.append(("per step", "observe(step), nothing pending", *measure(
            lambda: w.observe(7), number, repeat)))  # fmt: skip
        rows.append(("per step", "observe(step, 10 floats), nothing pending", *measure(
            lambda: w.observe(7, METRICS), number, repeat)))  # fmt: skip
        w.request(1_000_000, {"quality_ki_value": 0.6})  # stays pending: never fresh
        rows.append(("per step", "observe(step), 1 pending, no new data", *measure(
            lambda: w.observe(7), number, repeat)))  # fmt: skip
        rows.append(("per step", "observe(step, 10 floats), 1 pending", *measure(
            lambda: w.observe(7, METRICS), number, repeat)))  # fmt: skip
    return rows


def write_rows(repeat: int) -> list[tuple[str, str, float, float]]:
    rows = []
    doc_template: dict[str, object] = {name: None for name in STAT_FIELDS}
    doc_template.update(METRICS, step_current=500)
    with tempfile.TemporaryDirectory() as d:
        target = Path(d) / "plain.json"

        def plain_write() -> None:
            with open(target, "w", encoding="utf-8") as fh:
                json.dump(doc_template, fh, indent=2)

        rows.append(("per file", "baseline: json.dump into open() (no fsync)",
                     *measure(plain_write, 20, repeat)))  # fmt: skip
        for fsync in (False, True):
            snap = MetricsSnapshot()
            snap.update(501, METRICS)
            snap.update(501, layer_activity_map={f"Block_{i:02d}": float(i) for i in range(40)})
            w = DeferredStatsWriter(d, snapshot=snap, fsync=fsync)

            def write_one(w: DeferredStatsWriter = w, counter: list[int] = [0]) -> None:  # noqa: B006
                counter[0] += 1
                w.request(counter[0] % 500, {"quality_ki_value": 0.6})
                w.flush()

            label = f"request + build + validate + atomic write (fsync={fsync})"
            rows.append(("per file", label, *measure(write_one, 20, repeat)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls (a smoke run)")
    args = parser.parse_args()
    number, repeat = (2_000, 3) if args.quick else (20_000, 7)
    rows = observe_rows(number, repeat) + write_rows(3 if args.quick else 7)
    width = max(len(r[1]) for r in rows)
    print(f"{'kind':<9} {'operation':<{width}} {'median us':>10} {'best us':>10}")
    for kind, label, med, best in rows:
        print(f"{kind:<9} {label:<{width}} {med * 1e6:>10.2f} {best * 1e6:>10.2f}")


if __name__ == "__main__":
    main()
