"""GPU-only checks of the probe, for a session lent a device (one short run, see gpu_run.sh).

The probe wrapping flash_attention_2 (and sdpa) on a small random bf16 Llama on CUDA: same tokens
as the unprobed model, and the same per-class masses as the probe wrapping sdpa (both compute the
rows in float32 from the same bf16 queries and keys; the tolerance covers bf16 differences in the
hidden states between the two kernels). Then compiled decoding (static cache, inductor with CUDA
graphs) on a float32 model: the probe records inside the captured graphs, with the tokens and the
masses of eager decoding.
"""

from __future__ import annotations

import numpy as np
import torch

from lmms_textdom.core.compiled import compiled_decoding
from lmms_textdom.core.modality import PositionClasses
from lmms_textdom.core.probe import AttentionProbe
from lmms_textdom.tiny import build_llama


def probed(impl: str, ids, mask, classes):
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model, _ = build_llama(num_layers=4, hidden_size=256, num_heads=8, num_kv_heads=2, attn_implementation=impl)
    torch.set_default_dtype(torch.float32)
    plain = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=8, do_sample=False)
    with AttentionProbe(model, classes) as probe:
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=8, do_sample=False)
    assert torch.equal(plain, out), f"{impl}: the probe changed the generated tokens"
    return probe.stats(), probe.path


def compiled_check(ids, mask, classes) -> None:
    with torch.device("cuda"):
        model, _ = build_llama(num_layers=4, hidden_size=256, num_heads=8, num_kv_heads=2)
    runs = {}
    eager = {"cache_implementation": "static", "disable_compile": True}  # the same cache, decoded eagerly
    for name, extra in (("eager", eager), ("compiled", compiled_decoding())):
        for _ in range(2):  # the second compiled call replays the captured CUDA graphs
            with AttentionProbe(model, classes) as probe:
                out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=8, do_sample=False, **extra)
        runs[name] = out, probe.stats()
    assert torch.equal(runs["eager"][0], runs["compiled"][0]), "compiled decoding chose other tokens"
    worst = max(float(np.abs(a.mass - b.mass).max() / a.heads) for a, b in zip(runs["compiled"][1], runs["eager"][1]))
    print(f"compiled decoding (inductor, CUDA graphs): largest per-head mass difference to eager decoding {worst:.2e}")
    assert worst < 1e-4, "the probe inside the compiled graph measured other masses"


def main() -> None:
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(10, 400, (2, 300), generator=gen).cuda()
    mask = torch.ones_like(ids)
    mask[0, :40] = 0  # left padding in the first sequence
    class_ids = (torch.arange(300) >= 60).long().expand(2, -1).clone()
    class_ids[mask.cpu() == 0] = -1
    classes = PositionClasses(("text", "image"), class_ids)
    reference, _ = probed("sdpa", ids, mask, classes)
    for impl in ("flash_attention_2",):
        try:
            stats, path = probed(impl, ids, mask, classes)
        except (ImportError, ValueError) as exc:
            print(f"{impl}: not available here ({str(exc).splitlines()[0][:120]})")
            continue
        worst = max(float(np.abs(a.mass - b.mass).max() / a.heads) for a, b in zip(stats, reference))
        print(f"{impl}: path {path}, largest per-head mass difference to the sdpa probe {worst:.2e}")
        assert worst < 2e-2, f"{impl}: the probe's masses differ from sdpa's"
    compiled_check(ids, mask, classes)


if __name__ == "__main__":
    main()
