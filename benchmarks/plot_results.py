"""Chart of ``bench_sqs.py``'s results: aiosqsq against the hand-written aiobotocore loop.

    .venv/bin/python benchmarks/plot_results.py [--input benchmarks/results/sqs.json]
        [--output benchmarks/results/sqs.png]

Reads the results JSON (and ``<input stem>_profile.json`` beside it, when there is one) and
draws one PNG: messages/s, consumer CPU µs per message and SQS requests per message, one bar
per consumer (median over runs, whiskers from the fastest to the slowest run), with the
issue's targets drawn against the best hand loop; and, with a profile, where each consumer's
CPU per message goes. Needs matplotlib (``.venv/bin/pip install matplotlib``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display needed

import matplotlib.pyplot as plt
from matplotlib.axes import Axes

HERE = Path(__file__).resolve().parent
DEFAULT_INPUT = HERE / "results" / "sqs.json"
DEFAULT_OUTPUT = HERE / "results" / "sqs.png"
OURS = "#1f6fb4"
OURS_VARIANT = "#6fa8dc"
THEIRS = "#9a9a9a"
BEST = "#5c5c5c"
TARGET = "#c0392b"
# Profile categories folded into fewer bands for the chart (the JSON keeps them all).
BANDS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("botocore: signing + parsing", ("botocore: signing", "botocore: parsing"), "#e07b39"),
    ("botocore: everything else", ("botocore:",), "#f2b880"),
    ("aiohttp", ("aiohttp",), "#8fbc8f"),
    ("asyncio loop + sockets", ("asyncio",), "#b0c4de"),
    ("anyio", ("anyio",), "#7b9fd1"),
    ("aiosqsq: lean transport + SigV4", ("aiosqsq: lean",), "#4a90d9"),
    ("aiosqsq (engine + backend)", ("aiosqsq:",), "#1f6fb4"),
    ("handler, loop, other", ("handler", "other"), "#d9d9d9"),
)


def load(path: Path) -> tuple[dict[str, Any], dict[str, Any] | None]:
    results: dict[str, Any] = json.loads(path.read_text())
    profile_path = path.with_name(f"{path.stem}_profile.json")
    profile = json.loads(profile_path.read_text()) if profile_path.exists() else None
    return results, profile


def bar_panel(
    ax: Axes,
    results: dict[str, Any],
    metric: str,
    title: str,
    fmt: str,
    target: tuple[float, str] | None = None,
) -> None:
    consumers: dict[str, Any] = results["consumers"]
    best = results["comparison"]["best_hand_loop"]
    labels = list(consumers)
    medians = [consumers[c][metric]["median"] for c in labels]
    lows = [m - consumers[c][metric]["min"] for c, m in zip(labels, medians, strict=True)]
    highs = [consumers[c][metric]["max"] - m for c, m in zip(labels, medians, strict=True)]
    colours = [_colour(c, best) for c in labels]
    names = [f"{c}\n(best loop)" if c == best else c.replace(" ", "\n", 1) for c in labels]
    bars = ax.bar(names, medians, color=colours, yerr=[lows, highs], capsize=4, width=0.6)
    # inside the bars, below the whiskers and the target line
    ax.bar_label(
        bars,
        labels=[format(m, fmt) for m in medians],
        label_type="center",
        fontsize=10,
        color="white",
        fontweight="bold",
    )
    if target is not None:
        value, text = target
        ax.axhline(value, color=TARGET, linestyle="--", linewidth=1.2)
        title = f"{title}\n{text} (red dashes)"
    ax.set_title(title, fontsize=11)
    ax.set_ylim(0, max(m + h for m, h in zip(medians, highs, strict=True)) * 1.25)
    ax.tick_params(axis="x", labelsize=9)
    ax.spines[["top", "right"]].set_visible(False)


def _colour(label: str, best: str) -> str:
    if label == "aiosqsq":
        return OURS
    if label.startswith("aiosqsq"):
        return OURS_VARIANT
    return BEST if label == best else THEIRS


def profile_panel(ax: Axes, profile: dict[str, Any]) -> None:
    labels = list(profile)
    left = [0.0] * len(labels)
    for band, _, colour in BANDS:
        widths = []
        for label in labels:
            total = 0.0
            for category, found in profile[label]["categories"].items():
                if _band_of(category) == band:
                    total += found.get("estimated_us_per_message", found["us_per_message"])
            widths.append(total)
        ax.barh(labels, widths, left=left, color=colour, label=band, height=0.6)
        for i, width in enumerate(widths):
            if width >= 8:
                ax.text(
                    left[i] + width / 2, i, f"{width:.0f}", ha="center", va="center", fontsize=8
                )
        left = [x + w for x, w in zip(left, widths, strict=True)]
    for i, total in enumerate(left):
        ax.text(total + 2, i, f"{total:.0f} µs", va="center", fontsize=9)
    ax.set_xlim(0, max(left) * 1.08)
    ax.invert_yaxis()
    ax.set_xlabel("CPU µs per message (sampled shares x measured median)")
    ax.set_title("Where the consumer's CPU goes (one sampled drain each)", fontsize=11)
    ax.legend(fontsize=8, ncols=4, loc="upper center", bbox_to_anchor=(0.5, -0.22), frameon=False)
    ax.spines[["top", "right"]].set_visible(False)


def _band_of(category: str) -> str:
    for band, prefixes, _ in BANDS:  # in order: signing and parsing before other botocore
        if any(category.startswith(prefix) for prefix in prefixes):
            return band
    return BANDS[-1][0]


def draw(results: dict[str, Any], profile: dict[str, Any] | None, output: Path) -> None:
    comparison = results["comparison"]
    consumers = results["consumers"]
    best = consumers[comparison["best_hand_loop"]]
    targets = comparison["targets"]
    rows = 2 if profile else 1
    fig = plt.figure(figsize=(15, 5.6 + 3.4 * (rows - 1)), layout="constrained")
    grid = fig.add_gridspec(rows, 3, height_ratios=[5.6, 3.4][:rows])
    bar_panel(
        fig.add_subplot(grid[0, 0]),
        results,
        "messages_per_s",
        "Messages/s (higher is better)",
        ",.0f",
        (
            best["messages_per_s"]["median"] * targets["throughput_ratio_min"],
            f"target: >= {targets['throughput_ratio_min']:g}x the best loop",
        ),
    )
    bar_panel(
        fig.add_subplot(grid[0, 1]),
        results,
        "cpu_us_per_message",
        "Consumer CPU µs per message (lower is better)",
        ".0f",
        (
            best["cpu_us_per_message"]["median"] * targets["cpu_ratio_max"],
            f"target: <= {targets['cpu_ratio_max']:g}x the best loop",
        ),
    )
    bar_panel(
        fig.add_subplot(grid[0, 2]),
        results,
        "requests_per_message",
        "SQS requests per message (lower is better)",
        ".3f",
        (targets["requests_per_message_max"], f"target: <= {targets['requests_per_message_max']}"),
    )
    if profile:
        profile_panel(fig.add_subplot(grid[1, :]), profile)
    machine = results["machine"]
    fig.suptitle(
        f"Draining {results['messages_per_run']:,} messages from moto server over loopback, "
        f"no-op handler: median of {results['runs']} interleaved runs, whiskers min-max\n"
        f"aiosqsq (concurrency {results['aiosqsq_concurrency']}, default pollers = "
        f"{results['aiosqsq_pollers']}) vs hand-written aiobotocore loop (K concurrent "
        f"receive 10 / delete batch 10). {machine['cpu_model']}, {machine['usable_cores']} "
        f"cores, {machine['python']}, {results['date'][:10]}",
        fontsize=10,
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, default=DEFAULT_INPUT, help="bench_sqs.py's JSON")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="the PNG to write")
    args = parser.parse_args()
    results, profile = load(args.input)
    draw(results, profile, args.output)
    print(f"chart: {args.output}")


if __name__ == "__main__":
    main()
