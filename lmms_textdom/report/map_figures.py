"""Static figures of the viewer's samples (matplotlib): one PNG per sample, for papers.

Rows: the sample's non-text items (the first ``MOST_ITEMS``); columns: the early, middle and late
layer group. Images show the thumbnail with the token grid's attention over it (dropped tokens
hatched), videos a per-frame bar strip, audio and time series the attention curve over time,
graphs the sorted per-node bars. Colours scale to the item's largest value in each panel.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np

from lmms_textdom.core.metrics import GROUPS
from lmms_textdom.report.map_layout import PlacedItem, placed_items
from lmms_textdom.report.map_samples import MapSample

MOST_ITEMS = 4
MOST_BARS = 20


def _picture(data_url: str):
    from PIL import Image

    return Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))).convert("RGB")


def _image(ax, placed: PlacedItem) -> None:
    from matplotlib.patches import Rectangle

    item = placed.item
    view = max(item["views"], key=lambda v: v["rows"] * v["cols"])  # the finest grid
    picture = np.asarray(_picture(item["thumbnail"]))
    x0, y0, x1, y1 = view["box"]
    ax.imshow(picture, extent=(0, 1, 1, 0))
    grid = placed.grid(view)
    top = np.nanmax(grid) if not np.all(np.isnan(grid)) else 0
    shown = np.ma.masked_invalid(grid / top if top > 0 else np.zeros_like(grid))
    ax.imshow(shown, extent=(x0, x1, y1, y0), cmap="inferno", alpha=0.6, vmin=0, vmax=1, interpolation="nearest")
    dropped = np.isnan(grid)
    if dropped.any():
        rows, cols = grid.shape
        for r, c in zip(*np.nonzero(dropped)):
            w, h = (x1 - x0) / cols, (y1 - y0) / rows
            ax.add_patch(Rectangle((x0 + c * w, y0 + r * h), w, h, fill=False, hatch="///", edgecolor="grey", lw=0))
    ax.set_xlim(min(0, x0), max(1, x1))
    ax.set_ylim(max(1, y1), min(0, y0))
    ax.axis("off")


def _video(ax, placed: PlacedItem) -> None:
    sums = placed.frame_sums()
    times = [f.get("time") for f in placed.item["frames"]]
    ax.bar(range(len(sums)), np.nan_to_num(sums), color="tab:red")
    ax.set_xticks(range(len(sums))[:: max(1, len(sums) // 8)])
    ax.set_xticklabels([f"{t:.0f}s" if t is not None else str(i) for i, t in list(enumerate(times))[:: max(1, len(sums) // 8)]], fontsize=6)
    ax.set_ylabel("per frame", fontsize=7)


def _audio(ax, placed: PlacedItem) -> None:
    item = placed.item
    envelope = np.asarray(item.get("envelope") or [[0, 0]], dtype=float)
    edges = np.linspace(0, item["seconds"], len(envelope))
    peak = np.abs(envelope).max() or 1.0
    ax.fill_between(edges, envelope[:, 0] / peak, envelope[:, 1] / peak, color="lightsteelblue")
    values = np.nan_to_num(placed.values)
    times = (np.arange(len(values)) + 0.5) * item["seconds_per_token"]
    twin = ax.twinx()
    twin.plot(times, values, color="tab:red", lw=1)
    twin.tick_params(labelsize=6)
    ax.set_yticks([])
    ax.set_xlabel("seconds", fontsize=7)


def _series(ax, placed: PlacedItem) -> None:
    item = placed.item
    values = np.asarray(item["values"], dtype=float)
    xs = np.arange(len(values)) * item["step"]
    attention = np.nan_to_num(placed.values)
    top = attention.max() or 1.0
    for i, v in enumerate(attention):
        ax.axvspan(i * item["patch_size"], min((i + 1) * item["patch_size"], item["length"]), color="tab:red", alpha=0.6 * v / top, lw=0)
    ax.plot(xs, values, color="black", lw=1)
    ax.set_xlabel("time step", fontsize=7)


def _graph(ax, placed: PlacedItem) -> None:
    ids = placed.item["node_ids"]
    values = np.nan_to_num(placed.values)
    order = np.argsort(-values, kind="stable")[:MOST_BARS]
    ax.barh(range(len(order)), values[order], color="tab:red")
    ax.set_yticks(range(len(order)))
    ax.set_yticklabels([str(ids[i]) for i in order], fontsize=6)
    ax.invert_yaxis()


DRAW = {"image": _image, "video": _video, "audio": _audio, "time_series": _series, "graph": _graph}


def draw_sample(sample: MapSample, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [g for g in GROUPS if g in sample.maps.groups]
    items = sample.maps.items[:MOST_ITEMS]
    rows = max(1, len(items))
    fig, axes = plt.subplots(rows, len(groups), figsize=(3.2 * len(groups), 2.6 * rows), squeeze=False)
    for column, group in enumerate(groups):
        placed = placed_items(sample.maps, group)[:MOST_ITEMS]
        spread = sample.spread.get(group, {})
        for row, p in enumerate(placed):
            ax = axes[row][column]
            DRAW.get(p.kind, lambda *_: None)(ax, p)
            if row == 0:
                mdi, top = sample.values.get(f"mdi_{group}"), spread.get("top10_share")
                title = group + ("" if mdi is None else f": MDI {mdi:.3g}") + ("" if top is None else f", top-10% {top:.0%}")
                ax.set_title(title, fontsize=8)
        for row in range(len(placed), rows):
            axes[row][column].axis("off")
    fig.suptitle(f"{sample.task}, doc {sample.doc_id}", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
