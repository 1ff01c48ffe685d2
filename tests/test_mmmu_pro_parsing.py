"""MMMU-Pro answer parsing on realistic responses, direct and chain-of-thought, both configs."""

from __future__ import annotations

import pytest

from lmms_textdom.tasks.mmmu_pro.parsing import parse_choice
from lmms_textdom.tasks.mmmu_pro.utils import doc_to_text, doc_to_visual, process_results

TEN = ["a cat", "a dog", "a photo of a bridge", "the first chart", "a table", "red", "blue", "green", "ten", "none of these"]
FOUR = TEN[:4]

DIRECT = [
    ("B", "B"),
    ("B.", "B"),
    ("(C)", "C"),
    ("The answer is (D).", "D"),
    ("Answer: E", "E"),
    ("**Answer: G**", "G"),
    ("J", "J"),
    # "I " from "I think" is option I; the letter that occurs last wins, as in the official code.
    ("I think the correct option is F because of the colour.", "F"),
    ("A. a cat", "A"),
    ("D. the first chart is what the image shows", "D"),
]
COT = [
    ("Looking at <image 1>, option A is wrong and B ignores the axis.\nTherefore the chart matches.\nAnswer: C", "C"),
    ("Step 1: count the bars. Step 2: compare.\nThe bridge appears in the photo.\n\nAnswer: (C)", "C"),
    # several letters after the last "Answer:" -> not unique -> heuristics on the whole text ("(B)" last bracket)
    ("We compare (A) and (B) carefully. Answer: A or B", "B"),
    ("Answer: B\nWait, re-checking the legend the colours differ.\nAnswer: H", "H"),
    # no letter at all, more than five words, option text present -> content match
    ("The image clearly shows a photo of a bridge over water at dusk", "C"),
]


@pytest.mark.parametrize("response,expected", DIRECT + COT)
def test_standard_ten_options(response, expected):
    assert parse_choice(response, TEN, seed="test_Math_1") == expected


@pytest.mark.parametrize(
    "response,expected",
    [("Answer: D", "D"), ("(B)", "B"), ("C", "C"), ("The question in the image asks for the table.\nAnswer: A", "A")],
)
def test_four_options(response, expected):
    assert parse_choice(response, FOUR, seed="x") == expected


def test_unparseable_guess_is_seeded_and_valid():
    guesses = {parse_choice("hmm", TEN, seed="test_Art_3") for _ in range(20)}
    assert len(guesses) == 1 and guesses <= set("ABCDEFGHIJ")
    spread = {parse_choice("hmm", TEN, seed=f"test_Art_{i}") for i in range(60)}
    assert len(spread) > 3, "different questions should get different guesses"


def test_lowercase_answer_tag_is_not_the_official_tag():
    # The official parser matches "Answer:" case-sensitively; "answer: b" falls back to a guess.
    assert parse_choice("answer: b", FOUR, seed="s") == parse_choice("zzz", FOUR, seed="s")


def vision_doc(options=TEN, answer="C"):
    return {"id": "test_Physics_9", "options": str(options), "answer": answer, "subject": "Physics"}


@pytest.mark.parametrize(
    "response,correct",
    [
        ("C", True),
        ("The image shows the question about a photo.\nAnswer: C", True),  # lmms-eval 0.7.3 marks this wrong
        ("Write out: Which option ... A. a cat B. a dog\nAnswer: D", False),
    ],
)
def test_vision_config_is_parsed_against_its_options(response, correct):
    out = process_results(vision_doc(), [response])
    assert out["mmmu_acc"]["score"] == float(correct)
    assert "mdi_early" not in out, "no textdom payload -> no textdom metrics"


def test_standard_prompt_and_image_order_follow_the_official_inference():
    from PIL import Image

    images = {f"image_{n}": Image.new("RGB", (4, 4), (n, 0, 0)) for n in range(1, 4)}
    doc = {
        "id": "test_Art_1",
        "question": "Compare <image 2> with <image 1>.",
        "options": str(["<image 3>", "a cat", "<image 1>", "a dog"]),
        "answer": "A",
        **images,
        **{f"image_{n}": None for n in range(4, 8)},
    }
    text = doc_to_text(doc, {"prompt": "Answer with the option letter from the given choices directly."})
    assert text == (
        "Compare [image] with [image].\nA. [image]\nB. a cat\nC. [image]\nD. a dog\n"
        "Answer with the option letter from the given choices directly."
    )
    # order of reference in question then options, repeats kept: 2, 1, 3, 1
    assert [img.getpixel((0, 0))[0] for img in doc_to_visual(doc)] == [2, 1, 3, 1]


def official_stripped(response: str) -> str:
    """The official evaluate.py's punctuation step, written from its loop: for each of , . ! ? ; : '
    in that order, ``response = response.strip(char)``."""
    for char in [",", ".", "!", "?", ";", ":", "'"]:
        response = response.strip(char)
    return response


@pytest.mark.parametrize(
    "response,stripped",
    [
        ("A,.", "A,"),  # "," goes first, while "." still guards it
        ("B,:", "B,"),
        ("I think it is C...'", "I think it is C..."),  # "." comes before "'"
        ("'D'", "D"),
        ("E.!?", "E.!"),
        (".,F,.", ",F,"),
    ],
)
def test_punctuation_is_stripped_one_character_kind_at_a_time(response, stripped):
    assert official_stripped(response) == stripped


@pytest.mark.parametrize("response", ["A,.", "B,:", "C,;"])
def test_a_letter_left_behind_punctuation_is_not_an_answer(response):
    # The official code sees " A, " here: no "(A)", no "A ", no "A.", fewer than six words, so it guesses.
    assert parse_choice(response, TEN, seed="q7") == parse_choice("no letter here", TEN, seed="q7")


@pytest.mark.parametrize(
    "response,expected",
    [
        ("I think it is C...'", "C"),  # four options (ten would read "I " as option I): "C." matches
        ("'D'", "D"),
        ("B'.", "B"),  # "." then "'" leave "B"
        ("E.!?", "E"),  # "?" goes, "!" was already passed: " E.! " still has "E."
        ("The answer must be G.'", "G"),
    ],
)
def test_responses_ending_in_mixed_punctuation(response, expected):
    assert parse_choice(response, TEN if expected > "D" else FOUR, seed="q8") == expected
