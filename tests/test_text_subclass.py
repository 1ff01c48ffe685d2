"""Text sub-classes (``text:<name>``): kept apart in the record, counted as text by every metric."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lmms_textdom.core.metrics import dominance, summarize
from lmms_textdom.core.modality import PositionClasses, mark_text_subclass
from lmms_textdom.core.stats import SampleStats, check_classes


def test_class_names():
    assert check_classes(("text", "graph", "text:graph_marker")) == ("text", "graph", "text:graph_marker")
    for bad in (("text", "text:"), ("text", "text:two words"), ("text", "marker")):
        with pytest.raises(ValueError, match="unknown position class"):
            check_classes(bad)


def test_marking_moves_only_text_positions():
    classes = PositionClasses(("text", "graph"), torch.tensor([[-1, 0, 0, 1, 1, 0]]))
    where = torch.tensor([[True, True, False, True, False, False]])
    marked = mark_text_subclass(classes, where, "text:graph_marker")
    assert marked.names == ("text", "graph", "text:graph_marker")
    assert marked.ids.tolist() == [[-1, 2, 0, 1, 1, 0]]  # padding and graph positions stay
    with pytest.raises(ValueError, match="text:<name>"):
        mark_text_subclass(classes, where, "image")


def test_metrics_merge_the_subclass_into_text():
    rng = np.random.default_rng(0)
    mass = rng.random((4, 3))
    split = SampleStats(("text", "graph", "text:graph_marker"), (10, 20, 2), mass, rng.random(4), rows=3, heads=2)
    merged = SampleStats(("text", "graph"), (12, 20), np.column_stack([mass[:, 0] + mass[:, 2], mass[:, 1]]), split.generated, 3, 2)
    assert split.text_count == 12 and split.nontext_count == 20
    assert split.text_mass([0, 1]) == pytest.approx(merged.text_mass([0, 1]))
    assert summarize(split).values() == pytest.approx(summarize(merged).values())
    late = dominance(mass[2:, [0, 2]].sum(), mass[2:, 1].sum(), 12, 20)
    assert summarize(split).values()["mdi_late"] == pytest.approx(late.mdi)


@pytest.mark.parametrize("layers", [slice(None), (0, 1), [2, 3], 3])
def test_masses_take_every_layer_selection(layers):
    mass = np.arange(12, dtype=float).reshape(4, 3)
    stats = SampleStats(("text", "graph", "text:graph_marker"), (1, 1, 1), mass, np.zeros(4), rows=1, heads=1)
    rows = mass[layers, :].reshape(-1, 3)
    assert stats.text_mass(layers) == rows[:, [0, 2]].sum() and stats.nontext_mass(layers) == rows[:, 1].sum()
