"""Where the answer looked, end to end: a hand-built tiny LLaVA whose answer attends one image patch, run
through the real lmms-eval CLI (plain, and pruned + replicated), its maps placed back on the image, and
the viewer page of ``lmms-textdom report --samples`` opened in headless Chromium.

The model: a CLIP tower that keeps patches apart (every layer's output projections zero, no position
embeddings) and whose patch features say only "bright" or "dark"; a projector that turns a bright patch
into a large vector along one direction and a dark one into nothing; a Llama whose every query has a
large component on the slowest rotary pair (a bias), where the keys read that direction. So the answer
attends wherever the bright patch is, by its content. The image is wider than high, so CLIP's processor
crops it, and the crop's grid must be placed right.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lmms_textdom.core.attention_maps import AttentionMaps
from lmms_textdom.editing.pruning import kept_count
from lmms_textdom.report.map_layout import placed_items
from tests.lmms_runs import run_cli
from tests.test_model_args_matrix import read_rows
from tests.test_report import report

GRID = 5  # 30 px crop, 6 px patches
BRIGHT = (1, 3)  # row, column of the bright patch in the crop's grid
WIDTH, HEIGHT, CROP_LEFT = 45, 30, 7  # CLIP: shortest edge 30 (kept), centre crop 30 x 30 from x = (45 - 30) // 2
TASK = "mmmu_pro_standard4_textdom"
RATIO, REPEAT = 0.5, 2


def bright_image() -> Image.Image:
    image = Image.new("RGB", (WIDTH, HEIGHT), (0, 0, 0))
    row, col = BRIGHT
    image.paste((255, 255, 255), (CROP_LEFT + 6 * col, 6 * row, CROP_LEFT + 6 * (col + 1), 6 * (row + 1)))
    return image


def attending_llava(path: Path) -> Path:
    from transformers import LlavaForConditionalGeneration

    from lmms_textdom.tiny import build_llava
    from lmms_textdom.tiny.common import instantiate

    model, processor = build_llava(num_layers=4)
    config = copy.deepcopy(model.config)
    config.text_config.attention_bias = True
    hand = instantiate(LlavaForConditionalGeneration, config, processor.tokenizer, 0, "sdpa")
    with torch.no_grad():
        tower = hand.model.vision_tower
        embeddings = tower.embeddings
        embeddings.patch_embedding.weight.zero_()
        embeddings.patch_embedding.weight[0] = 1.0 / embeddings.patch_embedding.weight[0].numel()  # channel 0: the patch's mean
        embeddings.position_embedding.weight.zero_()
        embeddings.class_embedding.zero_()
        for layer in tower.encoder.layers:  # each layer hands its input on unchanged: patches stay apart
            for linear in (layer.self_attn.out_proj, layer.mlp.fc2):
                linear.weight.zero_()
                linear.bias.zero_()
        norm = tower.pre_layrnorm
        norm.weight.fill_(1.0)
        norm.bias.zero_()
        unit = torch.zeros(1, norm.weight.numel())
        unit[0, 0] = 1.0
        pattern = norm(unit)[0]  # a bright patch's feature; a dark patch (negative mean) gives minus it
        first = tower.encoder.layers[0]  # its [CLS] row scores patches for pruning: the bright one first
        bright_key = first.self_attn.k_proj.weight @ first.layer_norm1(pattern)
        first.self_attn.q_proj.bias.copy_(3 * bright_key / bright_key.norm())
        projector = hand.model.multi_modal_projector
        for linear in (projector.linear_1, projector.linear_2):
            linear.weight.zero_()
            linear.bias.zero_()
        projector.linear_1.weight[0] = 10 * pattern / pattern.pow(2).sum()  # +10 bright, -10 dark (gelu: ~0)
        projector.linear_2.weight[0, 0] = 2.0  # bright: 20 along hidden dimension 0
        text = config.text_config
        head_dim = text.hidden_size // text.num_attention_heads
        slow = head_dim // 2 - 1  # the rotary pair that turns slowest: its dot product barely depends on position
        for layer in hand.model.language_model.layers:
            attention = layer.self_attn
            for projection, heads in ((attention.q_proj, text.num_attention_heads), (attention.k_proj, text.num_key_value_heads)):
                for h in range(heads):
                    for dim in (slow, slow + head_dim // 2):
                        projection.weight[h * head_dim + dim] = 0.0
                        projection.bias[h * head_dim + dim] = 0.0
            for h in range(text.num_attention_heads):
                attention.q_proj.bias[h * head_dim + slow] = 4.0  # every query asks for it
            for h in range(text.num_key_value_heads):
                attention.k_proj.weight[h * head_dim + slow, 0] = 4.0  # a key holds it where dimension 0 is large
            attention.v_proj.bias.zero_()
            attention.o_proj.bias.zero_()
    hand.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def write_data(root: Path) -> Path:
    """An MMMU-Pro snapshot whose "standard (4 options)" rows each show the bright image."""
    from datasets import Dataset

    from lmms_textdom.tiny.mmmu_pro_data import REPO, features_for, standard_rows, write_mmmu_pro_snapshot

    write_mmmu_pro_snapshot(root, rows_per_config=2)
    rows = standard_rows(2, 4)
    for row in rows:
        row.update({f"image_{n}": bright_image() if n == 1 else None for n in range(1, 8)}, question="Which option is correct for <image 1> ?")
    columns = {key: [row[key] for row in rows] for key in rows[0]}
    target = root / REPO / "standard (4 options)" / "test-00000-of-00001.parquet"
    Dataset.from_dict(columns, features=features_for("standard (4 options)")).to_parquet(str(target))
    return root


@pytest.fixture(scope="module")
def attended(tmp_path_factory):
    """CLI runs of the hand-built model (plain with steps, pruned + replicated) and the report with --samples."""
    root = tmp_path_factory.mktemp("attended")
    checkpoint = attending_llava(root / "attending-llava")
    data = write_data(root / "data")
    runs = {"plain": "attention_maps=steps", "edited": f"attention_maps=true,prune_ratio={RATIO},nontext_repeat={REPEAT}"}
    common = ("--limit", "2", "--gen_kwargs", "max_new_tokens=4")
    with ThreadPoolExecutor(2) as pool:
        done = dict(zip(runs, pool.map(
            lambda name: run_cli("llava_hf_textdom", f"pretrained={checkpoint},{runs[name]}", TASK, root / name, data, *common), runs,
        )))  # fmt: skip
    for name, finished in done.items():
        assert finished.returncode == 0, (name, finished.stderr[-3000:])
    out = root / "report"
    status, _, stderr = report(root / "plain", root / "edited", "--out", out, "--samples", "2", "--resamples", "0")
    assert status == 0, stderr
    return {"root": root, "out": out, **{name: read_rows(root / name) for name in runs}}


def maps_of(rows: dict) -> dict[int, AttentionMaps]:
    return {doc: AttentionMaps.from_dict(row["textdom"]["attention_maps"]) for (_, doc), row in rows.items()}


def test_the_attended_patch_is_where_the_map_places_its_attention(attended):
    for name in ("plain", "edited"):
        for doc, maps in maps_of(attended[name]).items():
            (item,) = maps.items
            assert item["views"][0]["rows"] == item["views"][0]["cols"] == GRID
            left, top, right, bottom = item["views"][0]["box"]  # the centre crop, in fractions of the image
            assert (left, top, right, bottom) == pytest.approx((CROP_LEFT / WIDTH, 0, (CROP_LEFT + 30) / WIDTH, 1))
            for group in maps.groups:
                (placed,) = placed_items(maps, group)
                grid = placed.grid(item["views"][0])
                assert np.unravel_index(np.nanargmax(grid), grid.shape) == BRIGHT, (name, doc, group)
                assert np.nanmax(grid) > 0.9 * np.nansum(grid), "the hand-built model looks at that patch only"
            if name == "edited":
                kept = kept_count(GRID * GRID, RATIO)
                assert item["positions"] == REPEAT * kept and len(item["offsets"]) == REPEAT * kept
                assert int(np.isnan(grid).sum()) == GRID * GRID - kept, "pruned patches are dropped"
                assert item["offsets"].count(BRIGHT[0] * GRID + BRIGHT[1]) == REPEAT
            else:
                assert "offsets" not in item and set(maps.quarters) == {"first", "last"}


class PageCells(HTMLParser):
    """Per heatmap id: its cells as (row, col, value or None when dropped); and the compared panels' visibility."""

    def __init__(self):
        super().__init__()
        self.maps: dict[str, list] = {}
        self.current = None
        self.others: list[bool] = []  # per side-by-side panel: shown?
        self.options: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "svg" and "heatmap" in (attrs.get("class") or ""):
            self.current = attrs.get("id")
            self.maps[self.current] = []
        elif tag == "rect" and self.current and "cell" in (attrs.get("class") or "").split():
            value = attrs.get("data-value")
            self.maps[self.current].append((int(attrs["data-row"]), int(attrs["data-col"]), None if value is None else float(value)))
        elif tag == "div" and "other" in (attrs.get("class") or "").split():
            self.others.append("hidden" not in attrs)
        elif tag == "option" and attrs.get("value"):
            self.options.append(attrs["value"])

    def handle_endtag(self, tag):
        if tag == "svg":
            self.current = None


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


def chromium(page: Path, fragment: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser, "chromium is missing: run scripts/ensure-chromium.sh (apt-get install -y chromium)"
    done = subprocess.run(
        [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, page.resolve().as_uri() + fragment], capture_output=True, text=True, timeout=120
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def viewer_pages(out: Path) -> dict[str, Path]:
    pages = sorted((out / "viewer").glob("*.html"))
    assert len(pages) == 2, pages
    return {"edited" if "received" in p.name or "cls" in p.name else "plain": p for p in pages}


def test_viewer_in_chromium_shows_the_hottest_cell_on_the_attended_patch(attended, tmp_path):
    pages = viewer_pages(attended["out"])
    for name, page in pages.items():
        html = page.read_text()
        assert "http://" not in html and "https://" not in html, "the page must not fetch anything"
        offered = PageCells()
        offered.feed(html)
        assert len(set(offered.options)) == 1, "the other run logged the same samples: it is offered side by side"
        parsed = PageCells()
        parsed.feed(chromium(page, f"#group=late&compare={offered.options[0]}", tmp_path, "--dump-dom").stdout)
        assert not any(offered.others), "side by side is off until asked"
        own = [cells for key, cells in parsed.maps.items() if key.startswith("s0-late-all-")]
        assert own, f"no late-group heatmap of sample 0 in {page.name}"
        for cells in own:
            values = [(v, (r, c)) for r, c, v in cells if v is not None]
            assert max(values)[1] == BRIGHT
            dropped = sum(v is None for _, _, v in cells)
            assert dropped == (GRID * GRID - kept_count(GRID * GRID, RATIO) if name == "edited" else 0)
        assert parsed.options and any(parsed.others), "the other run's panel of the same sample is shown side by side"
    # the static figure of each sample
    pngs = sorted((attended["out"] / "viewer").glob("*/*.png"))
    assert len(pngs) == 4 and all(Image.open(p).size[0] > 300 for p in pngs)


def test_screenshot_shows_the_overlay_over_the_attended_patch(attended, tmp_path):
    """The late-group heatmap alone at the top left, 240 px wide for the 30 px crop: the bright patch (row 1,
    column 3) spans x 144..192, y 48..96; the reddest pixels of the screenshot must be there."""
    page = viewer_pages(attended["out"])["plain"]
    shot = tmp_path / "shot.png"
    chromium(page, "#group=late&only=s0-late-all-i0-v0", tmp_path / "profile", f"--screenshot={shot}", "--window-size=400,320")
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(float)
    redness = pixels[..., 0] - (pixels[..., 1] + pixels[..., 2]) / 2
    hot = redness > 0.6 * redness.max()
    assert redness.max() > 120, "no red overlay in the screenshot"
    ys, xs = np.nonzero(hot)
    scale = 240 / 30
    row, col = BRIGHT
    assert abs(xs.mean() - (col + 0.5) * 6 * scale) < 8 and abs(ys.mean() - (row + 0.5) * 6 * scale) < 8
    assert xs.min() >= col * 6 * scale - 2 and xs.max() <= (col + 1) * 6 * scale + 2  # one cell, nothing beside it
    # under the overlay lies the white patch (red over white keeps some green; red over black has none): the
    # thumbnail is placed by the crop box, so a wrongly placed grid leaves part of the hot cell over black
    assert np.mean(pixels[hot][:, 1] > 25) > 0.9
    # the dark rest of the crop is shown, faintly tinted at most
    assert redness[int(4.5 * 6 * scale), int(0.5 * 6 * scale)] < 60
