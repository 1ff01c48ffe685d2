"""Visual contrastive decoding (model_args vcd_*) against an independent two-pass reference on the tiny LLaVA.

The reference runs two full forward passes per step without any cache, one on the clean pixels and
one on the pixels noised by VCD's schedule (computed here from its formula), combines their last
logits and applies the plausibility cut, then takes the argmax (greedy) or samples.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from lmms_textdom.models.base import Request
from lmms_textdom.models.llava.adapter import LlavaHfTextdom
from tests.conftest import random_image

NEW_TOKENS = 6
ALPHA, BETA, STEP, SEED = 1.0, 0.1, 500, 3


def requests(gen: dict) -> list[Request]:
    return [
        Request("what is shown in the image ?", [random_image(1)], {}, {"max_new_tokens": NEW_TOKENS, **gen}),
        Request("answer with the option letter from the given choices directly . a b c d", [random_image(2)], {}, {"max_new_tokens": NEW_TOKENS, **gen}),
    ]


def answer_ids(adapter, batch) -> list[list[int]]:
    return [r.token_counts.output_ids for r in adapter._run_batch(batch)]


def schedule_alpha_bar(step: int) -> float:
    """VCD's abar_T: betas = sigmoid(linspace(-6, 6, 1000)) * (5e-3 - 1e-5) + 1e-5, product of 1 - beta up to T."""
    xs = np.linspace(-6, 6, 1000)
    betas = 1 / (1 + np.exp(-xs)) * (0.5e-2 - 1e-5) + 1e-5
    return float(np.prod(1 - betas[: step + 1]))


def reference_ids(adapter, batch, alpha, beta, sample_seed=None) -> list[list[int]]:
    """Two cache-less passes per step; ``sample_seed``: sample (temperature 1) instead of greedy."""
    model = adapter.model
    inputs = adapter.prepare(batch).inputs
    pixels = inputs["pixel_values"].float()
    eps = torch.randn(pixels.shape, generator=torch.Generator().manual_seed(SEED))
    a = schedule_alpha_bar(STEP)
    noisy = math.sqrt(a) * pixels + math.sqrt(1 - a) * eps
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    pad, eos = adapter.pad_token_id, model.generation_config.eos_token_id
    eos = {eos} if isinstance(eos, int) else set(eos or ())
    done = torch.zeros(ids.shape[0], dtype=torch.bool)
    out = [[] for _ in range(ids.shape[0])]
    if sample_seed is not None:
        torch.manual_seed(sample_seed)
    for _ in range(NEW_TOKENS):
        positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
        with torch.no_grad():
            clean = model(input_ids=ids, attention_mask=mask, position_ids=positions, pixel_values=pixels).logits[:, -1].float()
            other = model(input_ids=ids, attention_mask=mask, position_ids=positions, pixel_values=noisy).logits[:, -1].float()
        scores = (1 + alpha) * clean - alpha * other
        scores[clean < clean.max(-1, keepdim=True).values + math.log(beta)] = -math.inf
        if sample_seed is None:
            token = scores.argmax(-1)
        else:
            token = torch.multinomial(scores.softmax(-1), 1).squeeze(1)
        token = torch.where(done, torch.full_like(token, pad), token)
        for b, t in enumerate(token.tolist()):
            if not done[b]:
                out[b].append(t)
        done |= torch.tensor([t in eos for t in token.tolist()])
        ids = torch.cat([ids, token[:, None]], 1)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
        if done.all():
            break
    return out


@pytest.fixture(scope="module")
def adapters(tiny_llava_dir):
    made = {}

    def adapter(**args):
        key = tuple(sorted(args.items()))
        if key not in made:
            made[key] = LlavaHfTextdom(pretrained=str(tiny_llava_dir), device="cpu", batch_size=2, **args)
        return made[key]

    return adapter


def test_vcd_greedy_equals_the_two_pass_reference(adapters):
    batch = requests({})
    vcd = adapters(textdom=False, vcd_alpha=ALPHA, vcd_beta=BETA, vcd_noise=STEP, vcd_seed=SEED)
    got = answer_ids(vcd, batch)
    assert got == reference_ids(vcd, batch, ALPHA, BETA)
    plain = answer_ids(adapters(textdom=False), batch)
    assert got != plain, "the contrast must change some answer of the random-weight model"


def test_vcd_sampling_equals_the_reference(adapters):
    batch = requests({"do_sample": True, "temperature": 1.0, "top_k": 0})
    vcd = adapters(textdom=False, vcd_alpha=ALPHA, vcd_beta=BETA, vcd_noise=STEP, vcd_seed=SEED)
    torch.manual_seed(11)
    got = answer_ids(vcd, batch)
    assert got == reference_ids(vcd, batch, ALPHA, BETA, sample_seed=11)


def test_vcd_alpha_zero_is_the_plain_run(adapters):
    batch = requests({})
    assert answer_ids(adapters(textdom=False, vcd_alpha=0.0, vcd_beta=0.5), batch) == answer_ids(adapters(textdom=False), batch)


def test_the_probe_records_the_main_pass_only(adapters):
    """VCD's answer measured by the teacher-forced pass of the plain model equals the VCD run's record:
    the second pass over the noised input left nothing in it."""
    from lmms_textdom.core.probe import FINISH_EOS

    batch = requests({})
    vcd = adapters(vcd_alpha=ALPHA, vcd_beta=BETA, vcd_noise=STEP, vcd_seed=SEED)
    ids = answer_ids(adapters(textdom=False, vcd_alpha=ALPHA, vcd_beta=BETA, vcd_noise=STEP, vcd_seed=SEED), batch)
    records = [json.loads(payload) for _, payload in vcd._run_batch(batch)]
    plain = adapters()
    measured = [json.loads(p) for p in plain.measure_batch(batch, ids, {}, [{} for _ in ids])]
    for record, reference, answer in zip(records, measured, ids):
        settings = record["settings"]
        assert (settings["vcd_alpha"], settings["vcd_beta"], settings["vcd_noise"], settings["vcd_seed"]) == (ALPHA, BETA, STEP, SEED)
        assert record["stats"]["rows"] == len(answer) == reference["stats"]["rows"]
        np.testing.assert_allclose(record["stats"]["mass"], reference["stats"]["mass"], rtol=1e-5, atol=1e-5)
    assert FINISH_EOS  # the answers may end early; rows follow each answer's own length


def test_noise_follows_the_schedule_and_scales_other_inputs():
    """The pre-hook noises the encoder's first input: unit noise for pixels, noise x the input's spread otherwise."""
    from lmms_textdom.mitigations.noise import Corruption, NoiseSite

    class Encoder(torch.nn.Module):
        def forward(self, x):
            return x

    image, series = Encoder(), Encoder()
    x = torch.arange(12.0).reshape(3, 4)
    values = [torch.linspace(0, 50, 7), torch.full((3,), 2.0)]
    corruption = Corruption([NoiseSite(image, "pixel_values"), NoiseSite(series, "series", scaled=True)], STEP, SEED)
    with corruption.active():
        noised = image(x)
        noised_series = series(values)
    assert torch.equal(image(x), x), "the hook must be gone after the context"
    generator = torch.Generator().manual_seed(SEED)
    a = schedule_alpha_bar(STEP)
    expected = math.sqrt(a) * x + math.sqrt(1 - a) * torch.randn(x.shape, generator=generator)
    torch.testing.assert_close(noised, expected)
    for got, v in zip(noised_series, values):
        spread = float(np.std(v.numpy()))
        torch.testing.assert_close(got, math.sqrt(a) * v + math.sqrt(1 - a) * spread * torch.randn(v.shape, generator=generator))
