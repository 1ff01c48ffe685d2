"""The metric definitions, checked by hand-computed examples and by properties of the formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmms_textdom.core.metrics import (
    MISSING,
    aggregate,
    aggregate_layers,
    aggregate_samples,
    dominance,
    layer_groups,
    pooled_dominance,
    sample_dominance,
    summarize,
)
from lmms_textdom.core.stats import SampleStats


def make_stats(text, nontext, counts=(10, 30), rows=5, heads=4, generated=None, classes=("text", "image")):
    mass = np.column_stack([text, nontext]) if len(classes) == 2 else np.asarray(nontext)
    generated = np.zeros(len(text)) if generated is None else generated
    return SampleStats(classes=classes, counts=counts, mass=mass, generated=generated, rows=rows, heads=heads)


def test_hand_computed_example():
    # A_T = 0.6, A_O = 0.2 (unnormalised; renormalised they are 0.75 / 0.25), |T| = 10, |O| = 30.
    d = dominance(0.6, 0.2, 10, 30)
    assert d.mdi == pytest.approx((0.75 / 10) / (0.25 / 30))  # 9.0
    assert d.mdi == pytest.approx(9.0)
    assert d.aei == pytest.approx(0.75 / 0.25)  # P_T / Q_T = 0.75 / 0.25 = 3
    assert d.aei_nontext == pytest.approx(0.25 / 0.75)


def test_equal_attention_per_token_gives_one():
    d = dominance(1.0, 3.0, 10, 30)
    assert d.mdi == pytest.approx(1.0) and d.aei == pytest.approx(1.0) and d.aei_nontext == pytest.approx(1.0)


@pytest.mark.parametrize(
    "args",
    [(1.0, 1.0, 0, 5), (1.0, 1.0, 5, 0), (1.0, 0.0, 5, 5), (0.0, 0.0, 5, 5)],
    ids=["no-text", "no-nontext", "zero-nontext-mass", "zero-mass"],
)
def test_undefined_cases_are_missing(args):
    assert dominance(*args) == MISSING


def test_zero_text_mass_is_defined():
    d = dominance(0.0, 1.0, 5, 5)
    assert d.mdi == 0.0 and d.aei == 0.0 and d.aei_nontext == pytest.approx(2.0)


def test_tiny_nontext_mass_stays_finite():
    d = dominance(1.0, 1e-300, 10, 10)
    assert d.defined and math.isfinite(d.mdi) and d.aei_nontext > 0


def test_no_rows_is_missing():
    assert sample_dominance(make_stats([0.0, 0.0], [0.0, 0.0], rows=0)) == MISSING


@pytest.mark.parametrize(
    "layers,expected",
    [
        (32, {"early": (0, 1), "middle": (15, 16), "late": (30, 31)}),
        (28, {"early": (0, 1), "middle": (13, 14), "late": (26, 27)}),
        (5, {"early": (0, 1), "middle": (1, 2), "late": (3, 4)}),
        (2, {"early": (0, 1), "middle": (0, 1), "late": (0, 1)}),
        (1, {"early": (0,), "middle": (0,), "late": (0,)}),
    ],
)
def test_layer_groups(layers, expected):
    assert layer_groups(layers) == expected


def test_group_sums_masses_over_its_layers_before_the_ratio():
    # 4 layers: early = 0,1 -> A_T = 1+3, A_O = 1+1 ; late = 2,3 -> A_T = 2+2, A_O = 6+2
    stats = make_stats(text=[1, 3, 2, 2], nontext=[1, 1, 6, 2], counts=(10, 10))
    s = summarize(stats)
    assert s.groups["early"].mdi == pytest.approx(4 / 2)
    assert s.groups["late"].mdi == pytest.approx(4 / 8)
    assert [d.mdi for d in s.layers] == pytest.approx([1.0, 3.0, 2 / 6, 1.0])
    assert set(s.values()) == {f"{m}_{g}" for m in ("mdi", "aei") for g in ("early", "middle", "late")}


def test_generated_mass_is_dropped():
    a = make_stats([1, 1], [1, 1], generated=np.array([0.0, 0.0]))
    b = make_stats([1, 1], [1, 1], generated=np.array([5.0, 7.0]))
    assert sample_dominance(a) == sample_dominance(b)


def test_several_nontext_classes_count_together():
    stats = SampleStats(
        classes=("text", "image", "video"),
        counts=(10, 10, 20),
        mass=np.array([[3.0, 0.5, 0.5]]),
        generated=np.zeros(1),
        rows=1,
        heads=1,
    )
    assert sample_dominance(stats).mdi == pytest.approx((3 / 10) / (1 / 30))


masses = st.floats(min_value=1e-6, max_value=1e6, allow_nan=False)
counts = st.integers(min_value=1, max_value=100_000)


@settings(max_examples=300, deadline=None)
@given(masses, masses, counts, counts)
def test_mdi_is_aei_ratio(a_t, a_o, n_t, n_o):
    d = dominance(a_t, a_o, n_t, n_o)
    assert d.mdi == pytest.approx(d.aei / d.aei_nontext, rel=1e-9)


@settings(max_examples=300, deadline=None)
@given(masses, masses, counts, counts)
def test_mdi_and_aei_on_same_side_of_one_and_mdi_farther(a_t, a_o, n_t, n_o):
    d = dominance(a_t, a_o, n_t, n_o)
    tol = 1e-9
    if d.mdi >= 1:
        assert d.mdi >= d.aei * (1 - tol) and d.aei >= 1 - tol
    else:
        assert d.mdi <= d.aei * (1 + tol) and d.aei <= 1 + tol


@settings(max_examples=200, deadline=None)
@given(masses, masses, counts, counts, st.floats(min_value=1e-3, max_value=1e3))
def test_invariant_to_scaling_the_masses(a_t, a_o, n_t, n_o, k):
    d, e = dominance(a_t, a_o, n_t, n_o), dominance(k * a_t, k * a_o, n_t, n_o)
    assert e.mdi == pytest.approx(d.mdi, rel=1e-9) and e.aei == pytest.approx(d.aei, rel=1e-9)


def test_aggregate_mean_skips_and_counts_missing():
    agg = aggregate([1.0, None, 3.0, None])
    assert (agg.value, agg.n, agg.missing) == (2.0, 2, 2)
    assert aggregate([None, None]).value is None


def test_aggregate_is_order_independent():
    values = [0.1 * i + 1e-12 * i * i for i in range(1000)]
    assert aggregate(values).value == aggregate(list(reversed(values))).value


def test_aggregate_geomean_and_median():
    assert aggregate([1.0, 4.0, 16.0], "geomean").value == pytest.approx(4.0)
    assert aggregate([0.0, 4.0], "geomean").value == 0.0
    assert aggregate([5.0, 1.0, 3.0, None], "median").value == 3.0
    assert aggregate([4.0, 1.0], "median").value == 2.5
    with pytest.raises(ValueError, match="mean, geomean or median"):
        aggregate([1.0], "max")


def test_pooled_of_one_sample_equals_the_sample():
    stats = make_stats([1, 3, 2, 2], [1, 1, 6, 2], counts=(7, 13), rows=3)
    unit, used, skipped = pooled_dominance([stats])
    assert unit.mdi == pytest.approx(sample_dominance(stats).mdi) and (used, skipped) == (1, 0)


def test_pooled_weights_rows_and_token_exposure():
    # Sample a: 2 rows, |T|=1, |O|=3, A_T=1, A_O=1. Sample b: 1 row, |T|=3, |O|=1, A_T=0.5, A_O=0.5.
    a = make_stats([1.0], [1.0], counts=(1, 3), rows=2)
    b = make_stats([0.5], [0.5], counts=(3, 1), rows=1)
    unit, used, _ = pooled_dominance([a, b])
    text_exposure, nontext_exposure = 2 * 1 + 1 * 3, 2 * 3 + 1 * 1
    assert unit.mdi == pytest.approx((1.5 / text_exposure) / (1.5 / nontext_exposure)) and used == 2


def test_aggregate_samples_methods():
    a = make_stats([1, 1, 1, 1], [1, 1, 1, 1], counts=(10, 10))  # MDI 1 everywhere
    b = make_stats([4, 4, 4, 4], [1, 1, 1, 1], counts=(10, 10))  # MDI 4 everywhere
    empty = make_stats([1, 1, 1, 1], [0, 0, 0, 0], counts=(10, 0))  # undefined
    mean = aggregate_samples([a, b, empty])
    assert mean["mdi_early"].value == pytest.approx(2.5) and mean["mdi_early"].missing == 1
    assert aggregate_samples([a, b], "geomean")["mdi_late"].value == pytest.approx(2.0)
    assert aggregate_samples([a, b], "pooled")["mdi_middle"].value == pytest.approx(2.5)
    assert list(mean) == [f"{m}_{g}" for m in ("mdi", "aei") for g in ("early", "middle", "late")]
    with pytest.raises(ValueError, match="pooled"):
        aggregate_samples([a], "sum")


def test_aggregate_layers_on_one_layer_matches_the_per_layer_values():
    a = make_stats([1, 2, 3, 4], [4, 3, 2, 1], counts=(10, 20), rows=2)
    b = make_stats([2, 2, 2, 2], [1, 2, 3, 4], counts=(5, 30), rows=3)
    for layer in range(4):
        mean = aggregate_layers([a, b], [layer])
        expected = [summarize(s).layers[layer] for s in (a, b)]
        assert mean["mdi"].value == pytest.approx((expected[0].mdi + expected[1].mdi) / 2)
        assert mean["aei"].value == pytest.approx((expected[0].aei + expected[1].aei) / 2)
        assert aggregate_layers([a, b], [layer], "pooled")["mdi"].value == pytest.approx(pooled_dominance([a, b], [layer])[0].mdi)
    with pytest.raises(ValueError, match="geomean"):
        aggregate_layers([a], [0], "sum")


def test_stats_round_trip_and_validation():
    stats = make_stats([1, 2], [3, 4], generated=np.array([0.5, 0.25]))
    again = SampleStats.from_dict(stats.to_dict())
    assert np.array_equal(again.mass, stats.mass) and again.counts == stats.counts and again.rows == stats.rows
    with pytest.raises(ValueError, match="unknown position class 'pixels'"):
        make_stats([1], [1], classes=("text", "pixels"))
    with pytest.raises(ValueError, match="first position class must be 'text'"):
        make_stats([1], [1], classes=("image", "text"))
    with pytest.raises(ValueError, match="non-negative"):
        make_stats([1], [-1])
    with pytest.raises(ValueError, match="finite"):
        make_stats([float("nan")], [1])
    with pytest.raises(ValueError, match="shape"):
        SampleStats(("text", "image"), (1, 1), np.ones((2, 3)), np.zeros(2), 1, 1)
