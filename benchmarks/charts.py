"""PNG charts from benchmark runs: accuracy per dataset with vs without the library, and the
learning curve (accuracy against the number of training problems the library learned from).

Run with: python -m benchmarks.charts --out benchmarks/results/charts RUN [RUN ...]
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from benchmarks.report import RESULTS, load_run, run_dir, stats


def accuracy_by_dataset(runs: dict[str, list[dict[str, Any]]], path: Path) -> Path:
    """Grouped bars: one group per dataset, one bar per run, with 95% intervals and n."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = sorted({r["dataset"] for rows in runs.values() for r in rows})
    width = 0.8 / max(1, len(runs))
    fig, ax = plt.subplots(figsize=(2.2 + 1.6 * len(datasets), 4))
    for n, (name, rows) in enumerate(runs.items()):
        xs, ys, errs, labels = [], [], [[], []], []
        for d, dataset in enumerate(datasets):
            subset = [r for r in rows if r["dataset"] == dataset]
            if not subset:
                continue
            s = stats(subset)
            xs.append(d + n * width)
            ys.append(100 * s["accuracy"])
            errs[0].append(100 * (s["accuracy"] - s["ci"][0]))
            errs[1].append(100 * (s["ci"][1] - s["accuracy"]))
            labels.append(f"n={s['n']}")
        bars = ax.bar(xs, ys, width, yerr=errs, capsize=3, label=name)
        for bar, label in zip(bars, labels, strict=True):
            ax.annotate(label, (bar.get_x() + bar.get_width() / 2, 1), ha="center", fontsize=7, rotation=90)
    ax.set_xticks([d + width * (len(runs) - 1) / 2 for d in range(len(datasets))], datasets, fontsize=8)
    ax.set_ylabel("accuracy % (95% CI)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8)
    ax.set_title("Accuracy per test split")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def learning_curve(points: list[tuple[int, float, int]], path: Path) -> Path:
    """Accuracy against the number of training problems learned from: ``(problems, accuracy, n)``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = sorted(points)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot([p[0] for p in points], [100 * p[1] for p in points], marker="o")
    for x, y, n in points:
        ax.annotate(f"n={n}", (x, 100 * y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=7)
    ax.set_xlabel("training problems the library learned from")
    ax.set_ylabel("test accuracy %")
    ax.set_title("Learning curve")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _learned_from(meta: dict[str, Any]) -> int:
    found = re.search(r"learned from (\d+) training problems", str(meta.get("library", "")))
    return int(found.group(1)) if found else 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.charts", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run folder names under benchmarks/results, or paths to run folders")
    parser.add_argument("--out", type=Path, default=RESULTS / "charts")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    loaded = {run_dir(name).name: load_run(run_dir(name)) for name in args.runs}
    keys = set.intersection(*({r["key"] for r in rows} for _, rows in loaded.values()))
    same = {name: [r for r in rows if r["key"] in keys] for name, (_, rows) in loaded.items()}
    print(accuracy_by_dataset(same, args.out / "accuracy_by_dataset.png"))
    points = [(_learned_from(meta), stats(same[name])["accuracy"], len(same[name]))
              for name, (meta, _) in loaded.items()]
    print(learning_curve(points, args.out / "learning_curve.png"))


if __name__ == "__main__":
    main()
