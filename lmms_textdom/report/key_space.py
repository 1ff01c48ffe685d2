"""Key-space divergence per layer, for runs made with ``key_stats=true`` (table, CSV and figures).

Per run and layer: the mean over samples of the divergence between text keys and each non-text
class's keys, next to the same measure within each class (two random halves), as
``lmms_textdom.analysis.key_space`` defines it. ``figures/key_projection`` draws one sample's keys
on their first two principal directions at chosen layers (``--key-layers``; default first, middle, last).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from lmms_textdom.analysis.key_space import LayerMeans, sample_divergences
from lmms_textdom.integration.hook import DETAIL
from lmms_textdom.report.table import Row

CLASS_COLOURS = {"text": "#4c72b0", "image": "#dd8452", "video": "#55a868", "audio": "#c44e52", "time_series": "#8172b3", "graph": "#937860"}


@dataclass
class KeySpace:
    label: str
    means: LayerMeans
    example: dict  # the first sample's key_stats record (for the projection figure)
    samples: int


def collect(rows: list[Row], notes: list[str]) -> list[KeySpace]:
    """Per-layer means for every task run (not group) whose samples carry key statistics."""
    found = []
    for row in rows:
        run = row.run
        if run.is_group or not run.settings.get("key_stats"):
            continue
        log = run.sample_log(run.task)
        means, example, count = LayerMeans(), None, 0
        try:
            with log.open() as lines:
                for line in lines:
                    record = json.loads(line)[DETAIL].get("key_stats") if line.strip() else None
                    if record:
                        means.add(sample_divergences(record))
                        example = example or record
                        count += 1
        except (OSError, ValueError, KeyError, TypeError) as exc:
            notes.append(f"key statistics of {row.label} not read from {log}: {exc!r}")
            continue
        if count:
            found.append(KeySpace(row.label, means, example, count))
    return found


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def markdown(found: list[KeySpace]) -> str:
    parts = [
        "Key-space divergence per layer: Jensen-Shannon (bits, 0-1) on the keys' principal coordinates, largest over "
        "the directions, at half-sample sizes; `a~b` between classes, `within:a` between two random halves of one "
        "class (the baseline); ratio = cross-class / largest within-class value; mean over samples."
    ]
    for space in found:
        names = space.means.names()
        cross = [n for n in names if "~" in n]
        header = f"| layer | {' | '.join(names)} | {' | '.join(f'ratio {n}' for n in cross)} |"
        lines = [f"\n**{space.label}** ({space.samples} samples)\n", header, "|---" * (1 + len(names) + len(cross)) + "|"]
        for layer in range(space.means.num_layers):
            values = {n: space.means.mean(layer, n) for n in names}
            ratios = []
            for n in cross:
                baselines = [v for v in (values.get("within:text"), values.get(f"within:{n.split('~')[1]}")) if v]
                ratios.append(None if values[n] is None or not baselines else values[n] / max(baselines))
            lines.append(f"| {layer} | {' | '.join(_fmt(values[n]) for n in names)} | {' | '.join('n/a' if r is None else f'{r:.1f}' for r in ratios)} |")
        parts.append("\n".join(lines))
    return "\n".join(parts) + "\n"


def write_csv(found: list[KeySpace], path: Path) -> None:
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["run", "layer", "divergence", "mean_js_bits", "samples"])
        for space in found:
            for layer in range(space.means.num_layers):
                for name in space.means.names():
                    out.writerow([space.label, layer, name, space.means.mean(layer, name), space.means.count(layer, name)])


def divergence_figure(found: list[KeySpace], out_dir: Path) -> list[Path]:
    import numpy as np
    from matplotlib.figure import Figure

    from lmms_textdom.report.figures import MARKERS, legend_beside, save

    figure = Figure(figsize=(9, 4.5))
    ax = figure.subplots()
    for i, space in enumerate(found):
        layers = np.arange(space.means.num_layers)
        for name in space.means.names():
            values = [space.means.mean(layer, name) for layer in layers]
            within = name.startswith("within:")
            ax.plot(layers, [np.nan if v is None else v for v in values], linestyle=":" if within else "-", marker=MARKERS[i % len(MARKERS)], markersize=4, label=f"{space.label}: {name}")
    ax.set_xlabel("language-model layer")
    ax.set_ylabel("Jensen-Shannon divergence (bits)")
    ax.set_title("key-space divergence: between classes (solid) and within a class, split halves (dotted)", fontsize=9)
    legend_beside(ax)
    return save(figure, out_dir, "key_space")


def projection_figure(space: KeySpace, out_dir: Path, chosen: list[int]) -> list[Path]:
    from matplotlib.figure import Figure

    from lmms_textdom.report.figures import save

    layers = space.example["layers"]
    figure = Figure(figsize=(4.2 * len(chosen), 4))
    axes = figure.subplots(1, len(chosen), squeeze=False)[0]
    for ax, layer in zip(axes, chosen):
        record = layers[layer]
        for name, points in record["coords"].items():
            xs = [p[0] for p in points]
            ys = [p[1] if len(p) > 1 else 0.0 for p in points]
            ax.scatter(xs, ys, s=10, alpha=0.7, color=CLASS_COLOURS.get(name), label=f"{name} ({len(points)})")
        share = record.get("explained")
        ax.set_title(f"layer {layer}" + (f" (top {space.example['components']} directions: {share:.0%} of variance)" if share is not None else ""), fontsize=8)
        ax.set_xlabel("principal direction 1")
        ax.set_ylabel("principal direction 2")
        ax.legend(fontsize=7)
    figure.suptitle(f"keys of one sample, {space.label}", fontsize=9)
    return save(figure, out_dir, "key_projection")


def projection_layers(num_layers: int, wanted: list[int] | None, notes: list[str]) -> list[int]:
    """``wanted`` within the model (others named in a note), else the first, middle and last layer."""
    if wanted:
        outside = [layer for layer in wanted if not 0 <= layer < num_layers]
        if outside:
            notes.append(f"--key-layers {' '.join(map(str, outside))} lie outside the model's layers 0-{num_layers - 1}")
        inside = sorted({layer for layer in wanted if 0 <= layer < num_layers})
        if inside:
            return inside
    return sorted({0, num_layers // 2, num_layers - 1})


def write(rows: list[Row], out: Path, figures: bool, key_layers: list[int] | None = None) -> tuple[list[Path], list[str], str | None]:
    """Files written, notes, and the Markdown (None when no run has key statistics)."""
    notes: list[str] = []
    found = collect(rows, notes)
    if not found:
        return [], notes, None
    text = markdown(found)
    written = [out / "key_space.md", out / "key_space.csv"]
    written[0].write_text(text)
    write_csv(found, written[1])
    if figures:
        (out / "figures").mkdir(parents=True, exist_ok=True)
        chosen = projection_layers(len(found[0].example["layers"]), key_layers, notes)
        written += divergence_figure(found, out / "figures") + projection_figure(found[0], out / "figures", chosen)
    return written, notes, text
