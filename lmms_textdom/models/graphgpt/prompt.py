"""GraphGPT's prompt: the ``graphchat_v1`` conversation with each ``<graph>`` expanded to its node slots."""

from __future__ import annotations

from typing import Sequence

from lmms_textdom.core.errors import UsageError

GRAPH = "<graph>"
PATCH, START, END = "<g_patch>", "<g_start>", "<g_end>"
# graphchat_v1's system text: three literals joined with no space between the sentences, as upstream
SYSTEM = (
    "You are GraphGPT, a large language and graph-structral assistant trained by HKUDS Lab."
    "You are able to understand the graph structures that the user provides, and assist the user with a variety of tasks "
    "using natural language."
    "Follow the instructions carefully and explain your answers in detail."
)


def check_graph_count(question: str, graphs: int, where: str = "the item") -> None:
    markers = question.count(GRAPH)
    if markers != graphs:
        raise UsageError(
            f"{where}: the prompt has {markers} {GRAPH} markers but the item has {graphs} graphs: "
            "each graph needs exactly one marker where it goes"
        )


def expand_graphs(question: str, node_counts: Sequence[int]) -> str:
    """Each ``<graph>``, in order, replaced by ``<g_start>`` + one ``<g_patch>`` per node + ``<g_end>``."""
    check_graph_count(question, len(node_counts))
    parts = question.split(GRAPH)
    out = parts[0]
    for count, rest in zip(node_counts, parts[1:]):
        out += START + PATCH * count + END + rest
    return out


def conversation(question: str) -> str:
    """``graphchat_v1`` with one user turn (separator style TWO: roles joined by spaces)."""
    return f"{SYSTEM} USER: {question} ASSISTANT:"
