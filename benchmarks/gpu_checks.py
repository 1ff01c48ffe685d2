"""GPU-only checks of the probe, for a session lent a device (one short run, see gpu_run.sh).

The probe wrapping flash_attention_2 (and sdpa) on a small random bf16 Llama on CUDA: same tokens
as the unprobed model, and the same per-class masses as the probe wrapping sdpa (both compute the
rows in float32 from the same bf16 queries and keys; the tolerance covers bf16 differences in the
hidden states between the two kernels).
"""

from __future__ import annotations

import numpy as np
import torch

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


if __name__ == "__main__":
    main()
