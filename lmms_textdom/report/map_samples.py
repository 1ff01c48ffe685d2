"""The samples a run's viewer shows: sample-log rows that carry attention maps (``attention_maps=true``).

Everything the viewer draws comes from the log itself: the question (lmms-eval's logged request
arguments), the answer, MDI/AEI, the spread numbers and the maps with their placement items,
thumbnails and waveform / series summaries included; the task's data is not read again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable

from lmms_textdom.core.attention_maps import AttentionMaps
from lmms_textdom.integration.hook import DETAIL
from lmms_textdom.report.runs import Run


@dataclass(frozen=True)
class MapSample:
    task: str
    doc_id: int
    question: str
    answer: str
    target: str
    values: dict[str, Any]  # mdi_early, aei_early, ...
    spread: dict[str, dict[str, Any]]  # group -> entropy, entropy_normalized, top10_share
    maps: AttentionMaps

    @property
    def key(self) -> tuple[str, int]:
        return self.task, self.doc_id


def _text(value: Any) -> str:
    while isinstance(value, list) and value:
        value = value[0]
    return "" if value is None or isinstance(value, list) else str(value)


def _sample(task: str, row: dict) -> MapSample | None:
    detail = row.get(DETAIL)
    if not isinstance(detail, dict) or "attention_maps" not in detail:
        return None
    # the request's context: "input" in lmms-eval 0.7's logs, the first logged argument in earlier ones
    question = row.get("input") if "input" in row else (row.get("arguments") or [None])[0]
    return MapSample(
        task=task, doc_id=int(row["doc_id"]), question=_text(question), answer=_text(row.get("filtered_resps") or row.get("resps")),
        target=_text(row.get("target")), values=dict(detail.get("values") or {}), spread=dict(detail.get("spread") or {}),
        maps=AttentionMaps.from_dict(detail["attention_maps"]),
    )  # fmt: skip


def read_map_samples(run: Run, limit: int, wanted: Iterable[tuple[str, int]] | None = None) -> list[MapSample]:
    """The run's first ``limit`` samples with maps, by doc id (or those of ``wanted`` (task, doc id) keys)."""
    wanted = None if wanted is None else set(wanted)
    found: list[MapSample] = []
    for task in run.leaves:
        path = run.sample_log(task)
        if not path.is_file():
            continue
        with path.open() as lines:
            for line in lines:
                if '"attention_maps"' not in line:  # cheap: most logs have none
                    continue
                row = json.loads(line)
                if wanted is not None and (task, int(row.get("doc_id", -1))) not in wanted:
                    continue
                sample = _sample(task, row)
                if sample is None:
                    continue
                found.append(sample)
                if wanted is None and len(found) > limit:  # keep the lowest doc ids only (the logs hold large maps)
                    found.sort(key=lambda s: s.key)
                    found.pop()
    found.sort(key=lambda s: s.key)
    return found
