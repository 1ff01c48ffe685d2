"""Text subclasses: named parts of the text positions, recorded apart without changing the headline metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lmms_textdom.core.metrics import summarize
from lmms_textdom.core.modality import PositionClasses
from lmms_textdom.core.stats import SampleStats
from lmms_textdom.editing.sequence import edit_nontext
from lmms_textdom.integration.hook import textdom_metrics


def stats(**extra) -> SampleStats:
    mass = np.array([[6.0, 2.0], [5.0, 3.0]])
    return SampleStats(("text", "time_series"), (10, 4), mass, np.zeros(2), rows=2, heads=4, **extra)


def test_records_keep_subclasses_apart_and_metrics_ignore_them():
    plain = stats()
    with_part = stats(subclass_counts={"ts_value_prefix": 3}, subclass_mass={"ts_value_prefix": [1.5, 2.5]})
    assert "subclasses" not in plain.to_dict()  # records without subclasses keep their old form
    data = with_part.to_dict()
    assert data["subclasses"] == {"ts_value_prefix": {"of": "text", "count": 3, "mass": [1.5, 2.5]}}
    back = SampleStats.from_dict(data)
    assert back.subclass_counts == {"ts_value_prefix": 3}
    np.testing.assert_array_equal(back.subclass_mass["ts_value_prefix"], [1.5, 2.5])
    assert summarize(with_part).values() == summarize(plain).values()
    detail = textdom_metrics({"stats": data, "settings": {}})["textdom"]
    assert detail["text_subclasses"]["ts_value_prefix"]["share_of_text_mass"]["early"] == pytest.approx(4.0 / 11.0)


@pytest.mark.parametrize(
    ("counts", "mass", "message"),
    [
        ({"p": 3}, {"p": [7.0, 1.0]}, "cannot exceed the text mass"),
        ({"p": 11}, {"p": [1.0, 1.0]}, "count 11 must lie in \\[0, 10\\]"),
        ({"p": 1}, {}, "must name the same subclasses"),
    ],
)
def test_impossible_subclasses_are_refused(counts, mass, message):
    with pytest.raises(ValueError, match=message):
        stats(subclass_counts=counts, subclass_mass=mass)


def test_position_classes_take_text_subsets_only_and_replication_carries_them():
    ids = torch.tensor([[-1, 0, 0, 1, 1, 0], [0, 0, 1, 1, 1, 0]])
    with pytest.raises(ValueError, match="must mark text positions only"):
        PositionClasses(("text", "time_series"), ids, {"p": ids == 1})
    part = torch.tensor([[False, False, True, False, False, False], [False, True, False, False, False, True]])
    classes = PositionClasses(("text", "time_series"), ids, {"p": part})
    assert classes.subclass_counts() == [{"p": 1}, {"p": 2}]
    embeds = torch.arange(12.0).view(2, 6, 1)
    edited, after, _ = edit_nontext(classes, {1: [2, 3]}, None, 0.0, 3, {"inputs_embeds": (embeds, 0.0)})
    assert after.counts() == [(3, 6), (3, 9)]
    assert after.subclass_counts() == [{"p": 1}, {"p": 2}]
    # the marked positions keep their content: the token before the block in sample 0, first and last in sample 1
    assert edited["inputs_embeds"][after.subclasses["p"]].flatten().tolist() == [2.0, 7.0, 11.0]
