"""iemocap_textdom's parts: the answer mapping, scoring and aggregations, and loading the snapshot."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lmms_textdom.core.errors import UsageError
from lmms_textdom.tasks.iemocap.answers import classes_named, map_answer
from lmms_textdom.tasks.iemocap.utils import count, doc_to_target, doc_to_visual, load_sessions, process_results, unweighted_accuracy

ANSWERS = [
    # bare keywords, as Qwen2-Audio's emotion prompt tends to produce them (MELD-style labels included)
    ("sad", "sad"), ("Sadness", "sad"), ("unhappy", "sad"), ("depressed", "sad"),
    ("happy", "hap"), ("happiness", "hap"), ("excited", "hap"), ("Joy", "hap"), ("joyful and excited", "hap"),
    ("angry", "ang"), ("anger", "ang"), ("mad", "ang"), ("furious!", "ang"), ("Emotion: ANGER", "ang"),
    ("neutral", "neu"), ("calm", "neu"), ("neu", "neu"),
    # sentences
    ("The speaker sounds sad.", "sad"),
    ("The emotion of the speaker is neutral.", "neu"),
    ("happy happy joy", "hap"),  # one class named several times
    # negations are skipped
    ("not angry, just calm", "neu"),
    ("The speaker isn't happy; she is sad", "sad"),
    ("She isn\u2019t sad, she\u2019s calm", "neu"),  # typographic apostrophe
    # unmapped: no class, several classes, or only negated keywords
    ("She is not very happy", None),
    ("happy or sad", None),
    ("sadly, the man is angry", None),
    ("frustrated", None), ("surprise", None), ("fear", None), ("disgust", None),
    ("", None), ("made it madness", None),  # whole words only
]  # fmt: skip


@pytest.mark.parametrize("answer,expected", ANSWERS)
def test_answer_mapping(answer, expected):
    assert map_answer(answer) == expected


def test_several_classes_are_reported_in_order_of_mention():
    assert classes_named("sadly, the man is angry, not neutral") == ("sad", "ang")


def test_process_results_scores_and_flags_unmapped_answers():
    assert process_results({"label": 3}, ["Sadness."]) == {
        "accuracy": 1.0, "unweighted_accuracy": {"gold": "sad", "predicted": "sad"}, "unmapped": 0,
    }  # fmt: skip
    assert process_results({"label": 0}, ["frustrated"]) == {
        "accuracy": 0.0, "unweighted_accuracy": {"gold": "ang", "predicted": None}, "unmapped": 1,
    }  # fmt: skip
    assert doc_to_target({"label": 1}) == "hap"


def test_unweighted_accuracy_is_the_mean_recall_of_the_classes_present():
    items = [("ang", "ang"), ("ang", "ang"), ("ang", None), ("hap", "hap"), ("sad", "neu"), ("sad", "ang")]
    items = [{"gold": gold, "predicted": predicted} for gold, predicted in items]
    assert unweighted_accuracy(items) == pytest.approx((2 / 3 + 1 + 0) / 3)  # neu absent from the gold labels
    assert math.isnan(unweighted_accuracy([]))
    assert count([0, 1, 1, 0]) == 2


def test_all_five_sessions_load_with_undecoded_audio(iemocap_data_root, monkeypatch):
    monkeypatch.setenv("LMMS_TEXTDOM_DATA", str(iemocap_data_root))
    docs = load_sessions(None)
    assert len(docs) == 10
    assert docs.features["label"].names == ["ang", "hap", "neu", "sad"]
    assert list(docs["label"]) == [i % 4 for i in range(10)]
    assert docs[0]["audio"]["path"].startswith("Ses01") and docs[9]["audio"]["path"].startswith("Ses05")
    lengths = []
    for doc in docs:
        (clip,) = doc_to_visual(doc)
        assert clip["sampling_rate"] == 16000 and clip["array"].dtype == np.float32
        lengths.append(len(clip["array"]))
    assert lengths[:3] == [9600, 16000, 22400]  # 0.6, 1.0 and 1.4 s


def test_missing_snapshot_names_the_variable_and_layout(tmp_path, monkeypatch):
    monkeypatch.setenv("LMMS_TEXTDOM_DATA", str(tmp_path))
    with pytest.raises(UsageError, match="Zahra99/IEMOCAP_Audio does not exist(.|\n)*huggingface-cli download Zahra99/IEMOCAP_Audio"):
        load_sessions(None)
