"""Key-space divergence: the estimator on Gaussians of known Jensen-Shannon divergence, and the key sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lmms_textdom.analysis.key_sampler import KeySampler, principal_coordinates
from lmms_textdom.analysis.key_space import js_divergence, layer_divergences, projected_js
from lmms_textdom.core.modality import classify_tokens


def gaussian_js(mean: float, sd: float) -> float:
    """JS divergence in bits between N(0, 1) and N(mean, sd^2), by numerical integration (independent of the estimator)."""
    x = np.linspace(-12 - abs(mean), 12 + abs(mean) + 8 * sd, 400_001)
    p = np.exp(-0.5 * x**2) / np.sqrt(2 * np.pi)
    q = np.exp(-0.5 * ((x - mean) / sd) ** 2) / (sd * np.sqrt(2 * np.pi))
    m = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = 0.5 * np.where(p > 0, p * np.log2(p / m), 0) + 0.5 * np.where(q > 0, q * np.log2(q / m), 0)
    return float(np.sum(terms) * (x[1] - x[0]))


def test_reference_values_are_sane():
    assert gaussian_js(0, 1) == pytest.approx(0, abs=1e-9)
    assert 0.99 < gaussian_js(20, 1) <= 1.0 + 1e-6  # disjoint: one bit


@pytest.mark.parametrize("mean,sd", [(0.5, 1), (1, 1), (2, 1), (3, 1), (0, 3), (1, 0.5)])
def test_histogram_js_recovers_known_gaussian_divergence(mean, sd):
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, 40_000)
    b = rng.normal(mean, sd, 40_000)
    assert js_divergence(a, b) == pytest.approx(gaussian_js(mean, sd), abs=0.01)


def test_same_distribution_gives_almost_nothing_and_order_does_not_matter():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=20_000), rng.normal(size=20_000)
    assert js_divergence(a, b) < 0.005
    c = rng.normal(1, 1, 5_000)
    assert js_divergence(a, c) == pytest.approx(js_divergence(c, a), abs=1e-12)


def test_principal_coordinates_match_numpy_pca():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, 12)) * np.linspace(3, 0.5, 12)
    coords, share = principal_coordinates(torch.tensor(x, dtype=torch.float32), 3)
    centred = x - x.mean(0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    expected = centred @ vt[:3].T
    np.testing.assert_allclose(np.abs(coords.numpy()), np.abs(expected), atol=1e-4)
    assert share == pytest.approx((s[:3] ** 2).sum() / (s**2).sum(), rel=1e-5)


def test_whole_pipeline_finds_a_shift_hidden_in_many_dimensions():
    """Text N(0, I) and image N(delta u, I) in 32 dimensions, u a random direction: the shared principal
    direction finds u, the cross-class value is the known 1-D JS, the within-class halves are near 0."""
    rng = np.random.default_rng(3)
    u = rng.normal(size=32)
    u /= np.linalg.norm(u)
    delta = 2.0
    text = rng.normal(size=(6000, 32))
    image = rng.normal(size=(6000, 32)) + delta * u
    coords, _ = principal_coordinates(torch.tensor(np.vstack([text, image]), dtype=torch.float32), 4)
    coords = coords.numpy()
    values = layer_divergences({"text": coords[:6000], "image": coords[6000:]})
    assert values["text~image"] == pytest.approx(gaussian_js(delta, 1), abs=0.02)
    assert values["within:text"] < 0.02 and values["within:image"] < 0.02
    # one projection never shows more than the full distributions differ (data processing)
    assert projected_js(coords[:6000], coords[6000:]) <= gaussian_js(delta, 1) + 0.02


def test_too_few_points_give_no_value():
    values = layer_divergences({"text": [[0.0], [1.0], [2.0], [3.0]], "image": [[1.0], [2.0]]})
    assert values["within:image"] is None and values["text~image"] is None
    assert values["within:text"] is not None


def test_key_sampler_is_bounded_deterministic_and_batch_invariant(tiny_llava, llava_batch):
    model, _ = tiny_llava
    classes = classify_tokens(llava_batch["input_ids"], {"image": model.config.image_token_id}, llava_batch["attention_mask"])

    def sample(inputs, cls):
        with torch.no_grad(), KeySampler(model, cls, positions=16) as sampler:
            model.generate(**inputs, max_new_tokens=3, do_sample=False)
        return sampler.samples()

    batched = sample(llava_batch, classes)
    assert batched == sample(llava_batch, classes), "reruns must give the same record"
    config = model.config.text_config
    for record, counts in zip(batched, classes.counts()):
        assert record["dims"] == config.num_key_value_heads * (config.hidden_size // config.num_attention_heads)
        assert record["counts"] == {"text": counts[0], "image": counts[1]} and len(record["layers"]) == config.num_hidden_layers
        for layer in record["layers"]:
            assert {name: len(points) for name, points in layer["coords"].items()} == {"text": min(16, counts[0]), "image": 16}
            assert all(len(p) == 4 for points in layer["coords"].values() for p in points)
            assert 0 < layer["explained"] <= 1
    # the second prompt alone (no padding) draws the same positions and gets the same coordinates
    one = {k: v[1:] for k, v in llava_batch.items()}
    alone = sample(one, classify_tokens(one["input_ids"], {"image": model.config.image_token_id}, one["attention_mask"]))[0]
    for got, want in zip(alone["layers"], batched[1]["layers"]):
        for name in want["coords"]:
            np.testing.assert_allclose(np.abs(got["coords"][name]), np.abs(want["coords"][name]), atol=2e-3)
