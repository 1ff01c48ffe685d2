"""``report --samples N``: a viewer page (and a PNG per sample) for every run that logged attention maps."""

from __future__ import annotations

from pathlib import Path

from lmms_textdom.report.map_samples import MapSample, read_map_samples
from lmms_textdom.report.table import Row
from lmms_textdom.report.viewer import slug, write_page

FOLDER = "viewer"


def write(rows: list[Row], out: Path, limit: int, figures: bool) -> tuple[list[Path], list[str]]:
    """Files written and notes. A run's page shows its first ``limit`` samples with maps (lowest doc ids);
    any other run that logged the same sample with maps can be shown beside it."""
    runs = [row for row in rows if not row.run.is_group and row.run.measured]
    shown = [(row, read_map_samples(row.run, limit)) for row in runs]
    shown = [(row, samples) for row, samples in shown if samples]
    if not shown:
        return [], ["--samples: no run logged attention maps (run with model_arg attention_maps=true and --log_samples)"]
    written = []
    for index, (row, samples) in enumerate(shown):
        keys = {s.key for s in samples}
        others: dict[tuple[str, int], list[tuple[str, str, MapSample]]] = {}
        for other_index, (other, _) in enumerate(shown):
            if other is row or not set(other.run.leaves) & set(row.run.leaves):
                continue
            for sample in read_map_samples(other.run, 0, keys):
                others.setdefault(sample.key, []).append((str(other_index), other.label, sample))
        name = f"{index:02d}_{slug(row.label)}"
        written.append(write_page(out / FOLDER / f"{name}.html", row.label, samples, others))
        if figures:
            from lmms_textdom.report import map_figures  # matplotlib loads only when figures are drawn

            written += [map_figures.draw_sample(s, out / FOLDER / name / f"{slug(s.task)}_{s.doc_id}.png") for s in samples]
    return written, []
