"""The sample viewer: one self-contained HTML page per run with attention maps (``report --samples N``).

Per sample: the question, the answer, MDI/AEI and the spread numbers per layer group, then each
non-text item drawn with where the answer looked, for the chosen layer group (and, with
``attention_maps=steps``, the chosen quarter of the answer):

- image: the thumbnail with the token grid over it, each cell coloured by its attention; cells
  whose token was pruned (or compressed away) hatched as dropped;
- video: the frame thumbnails with a strip of per-frame attention under them;
- audio: the waveform envelope with the attention per token along time under it;
- time series: the series with each patch's span shaded by its attention, and the curve under it;
- graph: one bar per node, sorted, labelled with the node id.

Colours scale to the item's largest value; the item's share of all non-text attention is printed
beside it. Other runs that logged the same sample can be shown side by side. Plain HTML, CSS and
inline SVG, all data inlined: the page opens offline, no network fetch. ``#group=late&part=first&
compare=1`` (the other run's index) in the address opens it in that state; ``only=<figure id>``
shows one figure alone at the top left (screenshots).
"""

from __future__ import annotations

import math
import re
from html import escape
from pathlib import Path
from typing import Sequence

import numpy as np

from lmms_textdom.core.attention_maps import SPREAD_KEYS
from lmms_textdom.core.metrics import GROUPS
from lmms_textdom.report.map_layout import PlacedItem, placed_items
from lmms_textdom.report.map_samples import MapSample

PARTS = {"all": "whole answer", "first": "first quarter", "last": "last quarter"}
IMAGE_WIDTH = 240
THUMB_HEIGHT = 44
PLOT_WIDTH = 480
MOST_BARS = 40
DROPPED = "url(#dropped)"

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
header { position: sticky; top: 0; background: #fff; padding: 0.4em 0; border-bottom: 1px solid #ddd; z-index: 2; }
button { margin-right: 0.3em; } button[aria-pressed="true"] { font-weight: bold; background: #333; color: #fff; }
section.sample { border-top: 2px solid #888; margin-top: 1.5em; padding-top: 0.5em; }
.qa { max-width: 70em; white-space: pre-wrap; } .qa b { display: inline-block; min-width: 5em; }
table.numbers { border-collapse: collapse; font-size: 13px; margin: 0.5em 0; }
table.numbers td, table.numbers th { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
.pair { display: flex; gap: 2em; align-items: flex-start; flex-wrap: wrap; }
.panel h3 { font-size: 14px; margin: 0.3em 0; }
.group { display: none; }
.item { margin: 0.5em 0 1em; } .item figcaption { font-size: 12px; color: #555; }
.views { display: flex; gap: 0.6em; flex-wrap: wrap; align-items: flex-start; }
.frames { display: flex; gap: 2px; flex-wrap: wrap; font-size: 10px; color: #555; }
.frames figure { margin: 0; text-align: center; }
svg text { font-size: 10px; fill: #333; }
body.only > *:not(.solo-root):not(.defs) { display: none !important; }
.solo-root { position: absolute; left: 0; top: 0; margin: 0; padding: 0; background: #fff; }
"""

SCRIPT = """
(function () {
  const body = document.body;
  const state = { group: body.dataset.group, part: "all", compare: "" };
  function apply() {
    body.dataset.group = state.group;
    body.dataset.part = state.part;
    document.querySelectorAll(".group").forEach(g => {
      g.style.display = (g.dataset.group === state.group && g.dataset.part === state.part) ? "block" : "none";
    });
    document.querySelectorAll("button[data-group]").forEach(b => b.setAttribute("aria-pressed", b.dataset.group === state.group));
    document.querySelectorAll("button[data-part]").forEach(b => b.setAttribute("aria-pressed", b.dataset.part === state.part));
    document.querySelectorAll("select.compare").forEach(s => {
      const wanted = state.compare && Array.from(s.options).some(o => o.value === state.compare) ? state.compare : s.value;
      s.value = wanted;
      s.closest("section").querySelectorAll(".panel.other").forEach(p => { p.hidden = p.dataset.run !== wanted; });
    });
  }
  document.querySelectorAll("button[data-group]").forEach(b => b.addEventListener("click", () => { state.group = b.dataset.group; apply(); }));
  document.querySelectorAll("button[data-part]").forEach(b => b.addEventListener("click", () => { state.part = b.dataset.part; apply(); }));
  document.querySelectorAll("select.compare").forEach(s => s.addEventListener("change", () => {
    s.closest("section").querySelectorAll(".panel.other").forEach(p => { p.hidden = p.dataset.run !== s.value; });
  }));
  const wanted = new URLSearchParams(location.hash.slice(1));
  if (wanted.get("group")) state.group = wanted.get("group");
  if (wanted.get("part")) state.part = wanted.get("part");
  if (wanted.get("compare")) state.compare = wanted.get("compare");
  apply();
  const only = wanted.get("only") && document.getElementById(wanted.get("only"));
  if (only) {  // one figure alone at the top left, e.g. for a screenshot
    const copy = only.cloneNode(true);
    copy.removeAttribute("id");
    copy.classList.add("solo-root");
    body.appendChild(copy);
    body.classList.add("only");
  }
})();
"""

#: hatching for dropped (pruned or compressed) tokens, referenced by every grid of the page
DEFS = (
    '<svg class="defs" width="0" height="0" style="position:absolute"><defs><pattern id="dropped" width="6" height="6" '
    'patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="#ddd"/>'
    '<line x1="0" y1="0" x2="0" y2="6" stroke="#888" stroke-width="2"/></pattern></defs></svg>'
)


def heat(t: float) -> str:
    """Fill colour of a cell at relative value t in [0, 1]: yellow to red."""
    t = min(max(t, 0.0), 1.0)
    return f"rgb({int(255 - 35 * t)},{int(210 * (1 - t))},0)"


def _number(value) -> str:
    return "" if value is None else f"{value:.3g}"


def _seconds(time) -> str:
    return "" if time is None else f"{time:.1f} s"


def _relative(values: np.ndarray) -> tuple[np.ndarray, float]:
    top = float(np.nanmax(values)) if values.size and not np.all(np.isnan(values)) else 0.0
    return (values / top if top > 0 else np.zeros_like(values)), top


def _cell(x: float, y: float, w: float, h: float, value: float, t: float, extra: str = "") -> str:
    if math.isnan(value):
        return f'<rect class="cell dropped" x="{x:.2f}" y="{y:.2f}" width="{w:.2f}" height="{h:.2f}" fill="{DROPPED}" fill-opacity="0.8"{extra}/>'
    return (
        f'<rect class="cell" x="{x:.2f}" y="{y:.2f}" width="{w:.2f}" height="{h:.2f}" fill="{heat(t)}" '
        f'fill-opacity="{0.8 * t:.3f}" data-value="{value:.6g}"{extra}/>'
    )


def image_view_svg(placed: PlacedItem, view: dict, figure_id: str) -> str:
    item = placed.item
    width_px, height_px = item.get("size") or (1, 1)
    x0, y0, x1, y1 = view["box"]
    width = IMAGE_WIDTH
    height = width * ((y1 - y0) * height_px) / ((x1 - x0) * width_px)
    grid = placed.grid(view)
    relative, _ = _relative(grid)
    rows, cols = grid.shape
    cells = "".join(
        _cell(c * width / cols, r * height / rows, width / cols, height / rows, grid[r, c], relative[r, c], f' data-row="{r}" data-col="{c}"')
        for r in range(rows) for c in range(cols)
    )  # fmt: skip
    image = (
        f'<image href="{item["thumbnail"]}" x="{-x0 / (x1 - x0) * width:.2f}" y="{-y0 / (y1 - y0) * height:.2f}" '
        f'width="{width / (x1 - x0):.2f}" height="{height / (y1 - y0):.2f}" preserveAspectRatio="none"/>'
    )
    return (
        f'<svg class="heatmap" id="{figure_id}" width="{width}" height="{height:.0f}" viewBox="0 0 {width} {height:.2f}" '
        f'data-rows="{rows}" data-cols="{cols}" overflow="hidden">{image}<g class="cells">{cells}</g>'
        f'<rect x="0" y="0" width="{width}" height="{height:.2f}" fill="none" stroke="#444"/></svg>'
    )


def image_html(placed: PlacedItem, item_id: str) -> str:
    views = placed.item["views"]
    names = ["base view", "crops"] if len(views) == 2 and views[1].get("newline") else [f"view {i + 1}" for i in range(len(views))]
    figures = "".join(
        f'<figure>{image_view_svg(placed, view, f"{item_id}-v{i}")}<figcaption>{escape(names[i]) if len(views) > 1 else ""}</figcaption></figure>'
        for i, view in enumerate(views)
    )  # fmt: skip
    return f'<div class="views">{figures}</div>'


def video_html(placed: PlacedItem, item_id: str) -> str:
    """The frame thumbnails, each above its cell of the per-frame strip, and the frame times under it."""
    frames = placed.item["frames"]
    sums = placed.frame_sums()
    relative, _ = _relative(sums)
    width_px, height_px = placed.item.get("size") or (4, 3)
    thumb_h = THUMB_HEIGHT
    thumb_w = thumb_h * width_px / height_px
    shown = [i for i, f in enumerate(frames) if f.get("thumbnail")]
    width = min(900, max(IMAGE_WIDTH, 14 * len(frames), (thumb_w + 2) * len(shown)))
    step = width / max(len(frames), 1)
    thumbs = "".join(
        f'<image class="frame-thumb" href="{frames[i]["thumbnail"]}" x="{min(max(i * step + step / 2 - thumb_w / 2, 0), width - thumb_w):.1f}" '
        f'y="0" width="{thumb_w:.1f}" height="{thumb_h}" data-frame="{i}"/>'
        for i in shown
    )  # fmt: skip
    top = thumb_h + 4
    cells = "".join(_cell(i * step, top, step, 24, v, t, f' data-frame="{i}"') for i, (v, t) in enumerate(zip(sums, relative)))
    every = max(1, math.ceil(len(frames) / 16))
    labels = "".join(
        f'<text x="{i * step + step / 2:.1f}" y="{top + 36}" text-anchor="middle">{_seconds(f.get("time"))}</text>'
        for i, f in enumerate(frames) if f.get("time") is not None and i % every == 0
    )  # fmt: skip
    return (
        f'<svg class="frame-strip" id="{item_id}-strip" width="{width:.0f}" height="{top + 40}" data-frames="{len(frames)}">'
        f'{thumbs}<g class="cells">{cells}</g>{labels}</svg><div class="note">per-frame attention under the frames</div>'
    )


def _polyline(xs: Sequence[float], ys: Sequence[float], css: str, extra: str = "") -> str:
    points = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys))
    return f'<polyline class="{css}" points="{points}" fill="none"{extra}/>'


def audio_html(placed: PlacedItem, item_id: str) -> str:
    item = placed.item
    seconds = max(float(item["seconds"]), 1e-9)
    envelope = item.get("envelope") or []
    width, wave_h, curve_h = PLOT_WIDTH, 60, 60
    if envelope:
        peak = max(max(abs(lo), abs(hi)) for lo, hi in envelope) or 1.0
        xs = [i * width / len(envelope) for i in range(len(envelope))]
        top = [wave_h / 2 - hi / peak * wave_h / 2 for _, hi in envelope]
        bottom = [wave_h / 2 - lo / peak * wave_h / 2 for lo, _ in envelope]
        points = " ".join(f"{x:.1f},{y:.1f}" for x, y in [*zip(xs, top), *reversed(list(zip(xs, bottom)))])
        wave = f'<polygon class="waveform" points="{points}" fill="#89a" stroke="none"/>'
    else:
        wave = ""
    values = np.nan_to_num(placed.values)
    relative, _ = _relative(values)
    per_token = float(item["seconds_per_token"])
    xs = [min((i + 0.5) * per_token / seconds, 1.0) * width for i in range(len(values))]
    ys = [wave_h + 8 + curve_h * (1 - t) for t in relative]
    curve = _polyline(xs, ys, "attention-curve", f' stroke="#c00" stroke-width="1.5" data-values="{" ".join(f"{v:.4g}" for v in values)}"')
    if len(values) <= 60:  # few tokens: each one marked
        curve += "".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2" fill="#c00"/>' for x, y in zip(xs, ys))
    axis = f'<text x="0" y="{wave_h + curve_h + 20}">0 s</text><text x="{width}" y="{wave_h + curve_h + 20}" text-anchor="end">{seconds:.2f} s</text>'
    return f'<svg class="audio-plot" id="{item_id}-audio" width="{width}" height="{wave_h + curve_h + 24}">{wave}{curve}{axis}</svg>'


def series_html(placed: PlacedItem, item_id: str) -> str:
    item = placed.item
    values, step, length, patch = np.asarray(item["values"], dtype=float), int(item["step"]), int(item["length"]), int(item["patch_size"])
    width, plot_h, curve_h = PLOT_WIDTH, 90, 40
    attention = np.nan_to_num(placed.values)
    relative, _ = _relative(attention)
    span = max(length, 1)
    shades = "".join(
        f'<rect class="patch" x="{i * patch / span * width:.1f}" y="0" width="{min(patch, length - i * patch) / span * width:.1f}" height="{plot_h}" '
        f'fill="{heat(t)}" fill-opacity="{0.7 * t:.3f}" data-value="{v:.6g}"/>'
        for i, (v, t) in enumerate(zip(attention, relative))
    )  # fmt: skip
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    scale = (hi - lo) or 1.0
    xs = [(i * step + 0.5) / span * width for i in range(len(values))]
    line = _polyline(xs, [plot_h - 4 - (v - lo) / scale * (plot_h - 8) for v in values], "series-line", ' stroke="#224" stroke-width="1.2"')
    centres = [(i * patch + min(patch, length - i * patch) / 2) / span * width for i in range(len(attention))]
    curve = _polyline(centres, [plot_h + 6 + curve_h * (1 - t) for t in relative], "attention-curve", ' stroke="#c00" stroke-width="1.5"')
    return f'<svg class="series-plot" id="{item_id}-series" width="{width}" height="{plot_h + curve_h + 10}">{shades}{line}{curve}</svg>'


def graph_html(placed: PlacedItem, item_id: str) -> str:
    ids = placed.item["node_ids"]
    values = np.nan_to_num(placed.values)
    order = np.argsort(-values, kind="stable")[:MOST_BARS]
    relative, _ = _relative(values)
    width, row = PLOT_WIDTH, 14
    bars = "".join(
        f'<text x="70" y="{k * row + 11}" text-anchor="end">{escape(str(ids[i]))}</text>'
        f'<rect class="node-bar" x="76" y="{k * row + 2}" width="{max(relative[i], 0.002) * (width - 140):.1f}" height="{row - 4}" '
        f'fill="{heat(relative[i])}" data-node="{escape(str(ids[i]))}" data-value="{values[i]:.6g}"/>'
        f'<text x="{80 + max(relative[i], 0.002) * (width - 140):.1f}" y="{k * row + 11}">{values[i]:.3g}</text>'
        for k, i in enumerate(order)
    )  # fmt: skip
    more = f'<text x="0" y="{len(order) * row + 12}">... {len(values) - len(order)} more nodes</text>' if len(values) > len(order) else ""
    height = len(order) * row + (16 if more else 4)
    return f'<svg class="graph-bars" id="{item_id}-bars" width="{width}" height="{height}">{bars}{more}</svg>'


def positions_html(placed: PlacedItem, item_id: str) -> str:
    """An item its family does not place: one cell per position, in sequence order."""
    values = placed.values
    relative, _ = _relative(values)
    width = min(900, max(IMAGE_WIDTH, 6 * len(values)))
    step = width / max(len(values), 1)
    cells = "".join(_cell(i * step, 0, step, 24, v, t, f' data-position="{i}"') for i, (v, t) in enumerate(zip(values, relative)))
    return f'<svg class="position-strip" id="{item_id}-strip" width="{width:.0f}" height="24"><g class="cells">{cells}</g></svg>'


DRAW = {
    "image": image_html, "video": video_html, "audio": audio_html, "time_series": series_html, "graph": graph_html,
    "positions": positions_html,
}  # fmt: skip


def items_html(sample: MapSample, group: str, part: str, panel_id: str) -> str:
    maps = sample.maps
    groups = maps.groups if part == "all" else maps.quarters[part]["groups"]
    placed = placed_items(maps, group, groups)
    total = float(np.nansum([np.nansum(p.values) for p in placed])) or 1.0
    out = []
    for i, p in enumerate(placed):
        item_id = f"{panel_id}-{group}-{part}-i{i}"
        share = float(np.nansum(p.values)) / total
        kind = p.kind
        head = f'{escape(kind.replace("_", " "))} {i + 1}: {p.item["positions"]} positions, {share:.0%} of the non-text attention'
        out.append(f'<figure class="item" data-kind="{kind}" id="{item_id}"><figcaption>{head}</figcaption>{DRAW.get(kind, lambda *_: "")(p, item_id)}</figure>')
    return "".join(out)


def numbers_table(sample: MapSample) -> str:
    head = "<tr><th>group</th><th>MDI</th><th>AEI</th><th>entropy</th><th>entropy / ln N</th><th>top-10% share</th></tr>"
    rows = []
    for g in GROUPS:
        spread = sample.spread.get(g, {})
        cells = [sample.values.get(f"mdi_{g}"), sample.values.get(f"aei_{g}"), *(spread.get(k) for k in SPREAD_KEYS)]
        rows.append(f"<tr><th>{g}</th>" + "".join(f"<td>{_number(v)}</td>" for v in cells) + "</tr>")
    return f'<table class="numbers">{head}{"".join(rows)}</table>'


def panel_html(sample: MapSample, panel_id: str, label: str, other: str | None = None) -> str:
    parts = ["all", *(sample.maps.quarters or {})]
    groups = "".join(
        f'<div class="group" data-group="{g}" data-part="{part}">{items_html(sample, g, part, panel_id)}</div>'
        for g in sample.maps.groups for part in parts
    )  # fmt: skip
    css, run = ("panel other", f' data-run="{other}" hidden') if other is not None else ("panel", "")
    answer = f'<div class="qa"><b>answer</b> {escape(sample.answer)}</div>' if other is not None else ""
    return f'<div class="{css}"{run}><h3>{escape(label)}</h3>{answer}{numbers_table(sample)}{groups}</div>'


def sample_section(index: int, sample: MapSample, label: str, others: list[tuple[str, str, MapSample]]) -> str:
    """``others``: (run key, run label, the same sample in that run)."""
    select = ""
    if others:
        options = '<option value="">none</option>' + "".join(f'<option value="{key}">{escape(name)}</option>' for key, name, _ in others)
        select = f'<label>side by side with <select class="compare">{options}</select></label>'
    panels = panel_html(sample, f"s{index}", label) + "".join(panel_html(s, f"s{index}r{key}", name, key) for key, name, s in others)
    return (
        f'<section class="sample" id="s{index}" data-task="{escape(sample.task)}" data-doc="{sample.doc_id}">'
        f"<h2>{escape(sample.task)}, doc {sample.doc_id}</h2>"
        f'<div class="qa"><b>question</b> {escape(sample.question)}</div><div class="qa"><b>answer</b> {escape(sample.answer)}</div>'
        f'<div class="qa"><b>target</b> {escape(sample.target)}</div>{select}<div class="pair">{panels}</div></section>'
    )


def page(label: str, samples: list[MapSample], others: dict[tuple[str, int], list[tuple[str, str, MapSample]]]) -> str:
    group_buttons = "".join(f'<button data-group="{g}">{g} layers</button>' for g in GROUPS)
    steps = any(s.maps.quarters for s in samples)
    part_buttons = "".join(f'<button data-part="{p}">{name}</button>' for p, name in PARTS.items()) if steps else ""
    sections = "".join(sample_section(i, s, label, others.get(s.key, [])) for i, s in enumerate(samples))
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>lmms-textdom samples: {escape(label)}</title>
<style>{STYLE}</style>
</head>
<body data-group="late" data-part="all">
{DEFS}
<header><b>{escape(label)}</b>: where the answer looked. Layer group: {group_buttons} {"answer part: " + part_buttons if steps else ""}</header>
{sections}
<script>{SCRIPT}</script>
</body>
</html>
"""


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:80] or "run"


def write_page(path: Path, label: str, samples: list[MapSample], others) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page(label, samples, others))
    return path
