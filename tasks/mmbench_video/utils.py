"""MMBench-Video scored 0-3 by an LLM judge as the benchmark does, plus MDI/AEI through the textdom hook.

Prompt: the question alone with the video, which is what VLMEvalKit sends a video model (its
"video LLM" route, ``[question, video]``: the video models put the question first by default,
``video_order``; the "Question: {q}\\nAnswer: " wording belongs to its frames-as-images route,
whose preamble counts the frames the task no longer chooses). ``pre_prompt`` / ``post_prompt`` in
``lmms_eval_specific_kwargs`` wrap the question for other wordings. Frame sampling is the model's
job: the task hands over the mp4's absolute path (lmms-eval's video convention).

Scoring: the judge configured by ``LMMS_TEXTDOM_JUDGE_*`` (``lmms_textdom.integration.judge``) rates each
answer 0-3; a reply that is not a lone 0-3, a judge that never answered, and an empty prediction
(which VLMEvalKit does not send to the judge) score -1, a failure. Without a judge the scores are
None (N/A in the table, one warning at start) and MDI/AEI are still measured. The judge model's
name is a row of the results (``mmbv_judge_model``); each sample records whether VLMEvalKit would
have skipped its prediction as missing (``vlmevalkit_skips``: "None", "N/A", ... read by pandas).
"""

from __future__ import annotations

import json
import os
from datetime import datetime

from loguru import logger

from lmms_textdom.integration.data import loud_process_docs
from lmms_textdom.integration.hook import split_response, textdom_metrics
from lmms_textdom.integration.judge import PREFIX, JudgeConfig, judge_from_env
from lmms_textdom.tasks.mmbench_video.dataset import load_rows
from lmms_textdom.tasks.mmbench_video.scoring import (
    COARSE_RATINGS,
    FAILED,
    JUDGE_SYSTEM_PROMPT,
    dimensions_of,
    judge_user_message,
    parse_score,
    ratings,
    vlmevalkit_skips,
)

NO_JUDGE = (
    f"MMBench-Video: no judge configured ({PREFIX}BASE_URL and {PREFIX}MODEL unset), so the answers are "
    "not scored (mmbv_* reported as N/A); MDI/AEI are still measured. To score, point "
    f"{PREFIX}BASE_URL at an OpenAI-compatible endpoint and set {PREFIX}MODEL (and {PREFIX}API_KEY)."
)


def _load():
    # a half-set judge configuration stops the run here, before any generation
    if JudgeConfig.from_env() is None and os.environ.get("RANK", "0") == "0":
        logger.warning(NO_JUDGE)
    import datasets

    return datasets.Dataset.from_list(load_rows())


load_docs = loud_process_docs(_load, "load_mmbench_video")


def doc_to_visual(doc):
    return [doc["video_path"]]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    kwargs = lmms_eval_specific_kwargs or {}
    return f"{kwargs.get('pre_prompt', '')}{doc['question']}{kwargs.get('post_prompt', '')}"


def judge(doc, prediction: str) -> tuple[int | None, str | None]:
    """(score 0-3 or -1, the judge's reply), or (None, None) without a judge."""
    chat = judge_from_env()
    if chat is None:
        return None, None
    if not prediction.strip():
        return FAILED, None
    reply = chat.reply(JUDGE_SYSTEM_PROMPT, judge_user_message(doc["question"], doc["answer"], prediction))
    return parse_score(reply), reply


def process_results(doc, results):
    texts, payload = split_response(results)
    prediction = texts[0] if texts else ""
    score, reply = judge(doc, prediction)
    chat = judge_from_env()
    record = {"index": doc["index"], "video": doc["video"], "dimensions": dimensions_of(doc["dimensions"]), "judgement": score}
    counted_as_zero = {**record, "judge_reply": reply, "vlmevalkit_skips": vlmevalkit_skips(prediction)}
    valid_only = dict(record)
    # "score" feeds lmms-eval's standard errors (clustered by video): failures as 0, or left out
    if score is not None:
        counted_as_zero["score"] = max(score, 0)
        if score != FAILED:
            valid_only["score"] = score
    return {
        "mmbv_score": counted_as_zero,
        "mmbv_score_valid": valid_only,
        "mmbv_judge_failed": None if score is None else int(score == FAILED),
        "mmbv_judge_model": chat.config.model if chat else None,
        **textdom_metrics(payload),
    }


def _ratings(items) -> dict | None:
    scored = [(item["dimensions"], item["judgement"]) for item in items if item.get("judgement") is not None]
    return ratings(scored) if scored else None


def _fmt(value) -> str:
    return "N/A" if value is None else f"{value:.2f}"


def _report(table: dict, args) -> None:
    lines = [f"{'rating':<40} {'all':>5} {'valid':>5}"]
    for kind, names in (("coarse", COARSE_RATINGS), ("fine", table["fine_all"])):
        lines += [f"{name:<40} {_fmt(table[f'{kind}_all'][name]):>5} {_fmt(table[f'{kind}_valid'][name]):>5}" for name in names]
    logger.info("MMBench-Video ratings (0-3; all = failures count 0, valid = failures left out):\n" + "\n".join(lines))
    if args is not None and getattr(args, "output_path", None):
        folder = os.path.join(args.output_path, "submissions")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"mmbench_video_textdom_ratings_{datetime.now():%Y%m%d_%H%M%S}.json")
        config = JudgeConfig.from_env()
        with open(path, "w") as handle:
            json.dump({"judge_model": config and config.model, **table}, handle, indent=2)
        logger.info(f"MMBench-Video ratings written to {path}")


def aggregate_score(items, args=None) -> float | None:
    """Overall mean on 0-3 with failed judgements counted as 0: the benchmark's headline number.

    Also logs every coarse and L3 rating and, with ``--output_path``, writes them to
    ``<output_path>/submissions/mmbench_video_textdom_ratings_<time>.json``.
    """
    table = _ratings(items)
    if table is None:
        return None
    _report(table, args)
    return table["coarse_all"]["Overall"]


def aggregate_score_valid(items) -> float | None:
    """Overall mean on 0-3 over the questions the judge scored."""
    table = _ratings(items)
    return None if table is None else table["coarse_valid"]["Overall"]


def judge_model(items) -> str | None:
    """The judge model the run was scored by (names joined if it changed mid-run); None without a judge."""
    names = sorted({item for item in items if item})
    return ", ".join(names) if names else None


def count_failed(items) -> int | None:
    """How many judgements failed (-1); None without a judge."""
    judged = [item for item in items if item is not None]
    return sum(judged) if judged else None
