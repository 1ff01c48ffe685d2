"""What a run does when one request fails (model_arg ``on_sample_error``).

A batch that raises is retried one request at a time, so one bad sample cannot take the others of
its batch along. A request that still fails on its own is, with ``on_sample_error=record`` (the
default), answered with an empty text and a failure payload (its task, doc id and exception;
``hook.encode_failure``) and the run goes on; when the responses are done, a framed summary on
stderr names every failed request. ``on_sample_error=stop`` ends the run at that request instead,
naming it.

Some exceptions belong to no single request; they end the run at once in either mode, because every
later request would fail the same way: a configuration error (``UsageError``), a CUDA error that
leaves the device unusable (``torch.AcceleratorError``), and failures of the first
``SETUP_FAILURES`` requests while none has been answered (a broken setup, not bad samples). Running
out of GPU memory on one batch or one long sample is per request: the memory is freed and the run
goes on (a model that does not fit at all fails while loading, before any request).
"""

from __future__ import annotations

import gc
import sys
import traceback
from dataclasses import asdict, dataclass

import torch
from loguru import logger
from tqdm import tqdm

from lmms_textdom.core.errors import UsageError, framed

RECORD, STOP = "record", "stop"
#: Failures in a row, with no request answered yet, that mean a broken setup.
SETUP_FAILURES = 8
_MESSAGE_CHARS = 2000  # an exception's message as recorded (some quote whole tensors)


class SampleFailed(RuntimeError):
    """A request failed and the run stops (``on_sample_error=stop``, or a broken setup)."""


def per_sample(exc: BaseException) -> bool:
    """Whether ``exc`` may belong to one request alone, so that the run can go on without it."""
    if not isinstance(exc, Exception) or isinstance(exc, UsageError):
        return False
    device_error = getattr(torch, "AcceleratorError", None)  # torch >= 2.8
    return not (device_error is not None and isinstance(exc, device_error))


def free_memory() -> None:
    """Let go of what a failed generate held (its KV cache, the probe's rows) before the next try."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@dataclass(frozen=True)
class Failure:
    """One request that failed on its own."""

    task: str
    doc_id: int
    split: str
    error: str  # the exception's type
    message: str

    @classmethod
    def of(cls, instance, exc: BaseException) -> "Failure":
        doc_id, task, split = instance.args[-3:]  # (context, gen_kwargs, doc_to_visual, doc_id, task, split)
        return cls(str(task), int(doc_id), str(split), type(exc).__name__, str(exc)[:_MESSAGE_CHARS])

    def record(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.task} doc_id {self.doc_id}: {self.error}: {self.message}"


class Responding:
    """The responses of one lmms-eval call: a progress bar, the failures, and their summary at the end."""

    def __init__(self, model_id: str, total: int, mode: str, rank: int, world_size: int):
        self.model_id = model_id
        self.total = total
        self.mode = mode
        self.where = f" (rank {rank} of {world_size})" if world_size > 1 else ""
        self.progress = tqdm(total=total, disable=rank != 0, desc=f"{model_id} responding")
        self.failures: list[Failure] = []
        self.answered = 0
        self.stopped = False

    def fail(self, instance, exc: Exception) -> Failure:
        """Record that ``instance`` failed on its own with ``exc``, or stop the run."""
        failure = Failure.of(instance, exc)
        if self.mode == STOP:
            raise SampleFailed(
                f"{failure}\non_sample_error=stop ends the run at the first request that fails on its own; "
                "on_sample_error=record (the default) records it as failed and goes on"
            ) from exc
        trace = "".join(traceback.format_exception(exc))
        logger.error(f"{self.model_id}{self.where}: request failed, recorded as failed: {failure}\n{trace}")
        self.failures.append(failure)
        if not self.answered and len(self.failures) >= SETUP_FAILURES:
            self.stopped = True
            raise SampleFailed(
                f"the first {len(self.failures)} requests all failed and none was answered: that is a broken setup, "
                f"not bad samples, so the run stops. The last one: {failure}"
            ) from exc
        return failure

    def summary(self) -> str:
        if self.stopped:
            head = [f"lmms-textdom{self.where}: {len(self.failures)} of {self.total} requests failed before the run stopped:"]
        else:
            head = [
                f"lmms-textdom{self.where}: {len(self.failures)} of {self.total} requests failed; the run went on without "
                f"them (on_sample_error={RECORD}).",
                "Each answered an empty text, is left out of MDI/AEI and counts in textdom_failed:",
            ]
        lines = [
            *head,
            *(f"  {failure}" for failure in self.failures),
            "on_sample_error=stop ends a run at the first failure instead. With --use_cache, rerunning the same "
            "command answers the finished requests from the cache and retries only the failed ones.",
        ]
        return framed("\n".join(lines))

    def close(self) -> None:
        self.progress.close()
        if self.failures:
            sys.stderr.write(self.summary())
            sys.stderr.flush()
