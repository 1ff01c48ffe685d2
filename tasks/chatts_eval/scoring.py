"""ChatTS's evaluation rules (``evaluation/evaluate_qa.py`` of NetManAIOps/ChatTS), without RAGAS.

A response is cut into numbered sub-answers, one per entry of ``ability_types``; each is scored by
the rule of its ability type into three lists, as upstream: categorical (right / wrong, or an F1),
numerical (``max(0, 1 - |p - g| / |g|)`` of the first number in the sentence with the keyword) and
reason. Upstream scores some reasons with RAGAS answer similarity (an OpenAI embedding judge):
those are not scored here, only counted (``Scores.unscored``), never guessed.

Where upstream raises and drops the whole item, the sub-answer scores 0 instead: an empty answer
to a ``deductive`` or ``causal`` question, a "yes" without a second sentence in
``local-correlation-inductive``; a ground truth of 0 that upstream divides by scores 1 for an
exact number and 0 otherwise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

ABBREVIATIONS = ("max.", "eg.", "Mrs.", "Dr.", "Mr.")
NUMBER = re.compile(r"-?\d+\.?\d*")


@dataclass
class Scores:
    categorical: list[float] = field(default_factory=list)
    numerical: list[float] = field(default_factory=list)
    reason: list[float] = field(default_factory=list)
    unscored: int = 0  # reasons upstream sends to RAGAS

    def extend(self, other: "Scores") -> None:
        self.categorical += other.categorical
        self.numerical += other.numerical
        self.reason += other.reason
        self.unscored += other.unscored


def _sentences(text: str, delimiters: str) -> list[str]:
    for abbreviation in ABBREVIATIONS:
        text = text.replace(abbreviation, abbreviation.replace(".", "<DOT>"))
    parts = re.split(f"[{delimiters}](?!\\d)", text)
    return [p.strip().replace("<DOT>", ".") for p in parts if p.strip()]


def sentences(text: str) -> list[str]:
    """Clauses: split at . ! ? , ; (and their CJK forms) unless a digit follows."""
    return _sentences(text, ".!?。！？,;，；")


def period_sentences(text: str) -> list[str]:
    return _sentences(text, ".。")


def numbers(text: str) -> list[float]:
    return [float(n) for n in NUMBER.findall(text)]


def same_name(name: str, text: str) -> bool:
    """Upstream's ``match_metric_name``: letters (and CJK) only, lowercased, substring."""
    keep = lambda s: re.sub(r"[^\u4e00-\u9fa5a-zA-Z]", "", s).lower()  # noqa: E731
    return keep(name) in keep(text)


def closeness(predicted: float, truth: float) -> float:
    if truth == 0:
        return float(predicted == 0)
    return max(0.0, min(1.0, 1.0 - abs(predicted - truth) / abs(truth)))


def closeness_near_zero(predicted: float, truth: float) -> float:
    """Trend numbers: a ground truth below 0.5 in magnitude only asks for a prediction below 0.5."""
    if abs(truth) < 0.5:
        return float(abs(predicted) < 0.5)
    return closeness(predicted, truth)


def first_number_after(clauses: list[str], has_keyword: Callable[[str], bool], truth: float, score=closeness) -> float:
    """Score of the first number of the first clause that has a number and the keyword; 0 if none."""
    for clause in clauses:
        found = numbers(clause)
        if found and has_keyword(clause):
            return score(found[0], truth)
    return 0.0


def trend(answer: str, attribute: dict, cols) -> Scores:
    clauses = sentences(answer)
    if not clauses:
        return Scores([0.0], [0.0])
    kind, first = attribute["type"], clauses[0]
    if "steady" in kind:
        right = "steady" in first  # case-sensitive, as upstream
    elif "decrease" in kind:
        right = "decreas" in first.lower()
    else:
        right = "increase" in kind and "increas" in first.lower()
    values = [first_number_after(clauses, lambda c: "start" in c, attribute["start"], closeness_near_zero)]
    if kind != "keep steady":
        amplitude = lambda c: "change value" in c or "from left to right" in c  # noqa: E731
        values.append(first_number_after(clauses, amplitude, attribute["amplitude"], closeness_near_zero))
    return Scores([float(right)], values)


def season(answer: str, attribute: dict, cols) -> Scores:
    clauses = sentences(answer)
    if not clauses:
        return Scores([0.0], [0.0])
    first = clauses[0].lower()
    right = "no periodic" in first if "no" in attribute["type"] else ("no" not in first and "periodic" in first)
    values = []
    if attribute["type"] != "no periodic fluctuation":
        values.append(first_number_after(clauses, lambda c: "each period" in c, attribute["period"]))
        values.append(first_number_after(clauses, lambda c: "amplitude" in c, attribute["amplitude"]))
    return Scores([float(right)], values)


def noise(answer: str, attribute: dict, cols) -> Scores:
    clauses = sentences(answer)
    if not clauses:
        return Scores([0.0], [0.0])
    first = clauses[0].lower()
    right = "no noise" in first if "almost no" in attribute["type"] else "noisy" in first
    values = []
    if "noisy" in attribute["type"]:
        values.append(first_number_after(clauses, lambda c: "standard" in c.lower() or "std" in c.lower(), attribute["std"]))
    return Scores([float(right)], values)


def _local_fact(answer: str, feature: dict) -> tuple[bool, float, float, str]:
    """(matched, position score, amplitude score, the matching fact) for one expected local fluctuation."""
    kinds = [feature["type"]] if isinstance(feature["type"], str) else list(feature["type"])
    position = amplitude = 0.0
    for fact in re.split(r"[;；]", answer):
        clauses = re.split(r"[，。,;；]", fact)
        if not any(kind in clauses[0].lower() for kind in kinds):
            continue
        matched = False
        for clause in clauses:
            found = numbers(clause)
            if not found:
                continue
            lowered = clause.lower()
            if "position" in lowered or "around point" in lowered:
                if abs(found[0] - feature["position"]) > 64:  # too far away to be the same event
                    continue
                position, matched = closeness(found[0], feature["position"]), True
            if matched and "amplitude" in lowered:
                amplitude = closeness(found[0], feature["amplitude"])
        if matched:
            return True, position, amplitude, fact
    return False, position, amplitude, ""


def local(answer: str, attribute: list, cols) -> Scores:
    scores = Scores()
    for feature in attribute:
        matched, position, amplitude, _ = _local_fact(answer, feature)
        scores.extend(Scores([float(matched)], [position, amplitude]))
    return scores


def local_inductive(answer: str, attribute: list, cols) -> Scores:
    """As ``local``; the explanation of a matched event goes to RAGAS upstream (an unmatched one scores 0)."""
    scores = Scores()
    for feature in attribute:
        matched, position, amplitude, _ = _local_fact(answer, feature)
        scores.extend(Scores([float(matched)], [position, amplitude], [] if matched else [0.0], int(matched)))
    return scores


def _yes_no(first: str, label: bool) -> bool:
    return "yes" in first.lower() if label else "no" in first.lower()


def shape_correlation_inductive(answer: str, attribute: dict, cols) -> Scores:
    clauses = sentences(answer)
    if not clauses:
        return Scores([0.0], [], [0.0])
    return Scores([float(_yes_no(clauses[0], attribute["label"]))], [], [], 1)


def _col_pairs(text: str, cols, separator: str) -> set:
    pairs = set()
    for fact in text.split(separator):
        items = fact.strip().split(",")
        if len(items) == 2:
            pairs |= {(col, items[1].strip()) for col in cols if same_name(col, items[0].strip())}
    return pairs


def local_correlation_inductive(answer: str, attribute: dict, cols) -> Scores:
    parts = period_sentences(answer)
    if not parts:
        return Scores([0.0], [], [0.0])
    if attribute["label"]:
        right = "yes" in parts[0].lower() and len(parts) > 1 and _col_pairs(parts[1], cols, ";") == set(map(tuple, attribute["pair"]))
    else:
        right = "no" in parts[0].lower()
    return Scores([float(right)], [], [], 1)


def _f1(expected: set, given: set) -> float:
    tp, fp, fn = len(expected & given), len(given - expected), len(expected - given)
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0


def shape_cluster_inductive(answer: str, attribute: dict, cols) -> Scores:
    parts = period_sentences(answer)
    if not parts:
        return Scores([0.0], [], [0.0])
    given = {col for fact in parts[0].split(",") for col in cols if same_name(col, fact.strip())}
    return Scores([_f1(set(attribute["cols"]), given)], [], [], 1)


def local_cluster_inductive(answer: str, attribute: dict, cols) -> Scores:
    parts = period_sentences(answer)
    if not parts:
        return Scores([0.0], [], [0.0])
    expected = set(zip(attribute["cols"], [pair[1] for pair in attribute["col_idx"]]))
    return Scores([_f1(expected, _col_pairs(parts[0], cols, ";"))], [], [], 1)


def deductive(answer: str, attribute: str, cols) -> Scores:
    label = sentences(attribute)[0].lower().strip()
    if label not in ("yes", "no"):
        return Scores([], [], [], 1)  # free-text conclusion: RAGAS upstream
    given = sentences(answer)
    return Scores([], [], [float(bool(given) and given[0].lower().strip() == label)])


def causal(answer: str, attribute: str, cols) -> Scores:
    label = sentences(attribute)[0].lower().strip()
    given = sentences(answer)
    return Scores([], [], [float(bool(given) and same_name(label, given[0].lower().strip()))])


def mcq2(answer: str, attribute: str, cols) -> Scores:
    return Scores([], [], [float(same_name(attribute, answer))])


RULES: dict[str, Callable] = {
    "trend": trend, "season": season, "noise": noise, "local": local, "local-inductive": local_inductive,
    "shape-correlation-inductive": shape_correlation_inductive, "local-correlation-inductive": local_correlation_inductive,
    "shape-cluster-inductive": shape_cluster_inductive, "local-cluster-inductive": local_cluster_inductive,
    "deductive": deductive, "causal": causal, "MCQ2": mcq2,
}  # fmt: skip

SUB_ANSWER = re.compile(r"(?:^|\n).*?\d+\.\s*(.*?)(?=\n.*?\d+\.|$)", re.MULTILINE | re.DOTALL)


def sub_answers(response: str, count: int) -> list[str]:
    """The response cut into ``count`` numbered answers as upstream cuts it ("" for missing ones)."""
    found = SUB_ANSWER.findall(response)
    matched = min(len(found), count)
    if matched == 1 and count > 1:
        # one numbered block found: try the literal "1. ", "2. ", ... markers instead
        starts = []
        for number in range(1, count + 1):
            if f"{number}. " not in response:
                break
            starts.append(response.index(f"{number}. "))
        if len(starts) == count:
            ends = [*starts[1:], len(response)]
            found = [response[s + len(f"{i + 1}. ") : e] for i, (s, e) in enumerate(zip(starts, ends))]
            matched = count
    elif count == 1 and matched == 1 and not found[0].strip():
        found[0] = response.rstrip()
    return [found[i] if i < matched else "" for i in range(count)]


def score_item(response: str, attributes: list, ability_types: list[str], cols: list[str]) -> tuple[Scores, list[str]]:
    """All sub-answers' scores, and the ability types that have no rule (not scored, counted)."""
    total, unknown = Scores(), []
    for answer, attribute, ability in zip(sub_answers(response, len(attributes)), attributes, ability_types):
        rule = RULES.get(ability)
        if rule is None:
            unknown.append(ability)
            total.unscored += 1
            continue
        total.extend(rule(answer, attribute, cols))
    return total, unknown
