"""Resumable runs: lmms-eval's response cache (``--use_cache DIR``) keeps each batch as it finishes.

lmms-eval 0.7.3's ``ResponseCache.execute`` hands every request it has no answer for to a single
``generate_until`` call and writes the answers only when that call returns, so a run that dies
half-way has written nothing and starts from scratch. For a model with ``response_batches`` (every
textdom model) the call is split here into the model's own batches, each written to the cache as
soon as it returns: a rerun of the same command answers those from the cache and generates the
rest, in the same batches as an uninterrupted run. Answers of failed requests are not written, so
a rerun retries them.

Where a run writes: ``DIR/runs/<run id>/rank_<r>.db``, merged into ``DIR/cache.db`` only when the
run succeeds; a new run reads ``cache.db`` and its own run folder. The run id comes from
``LMMS_CACHE_RUN_ID`` (else ``SLURM_JOB_ID``, ``TORCHELASTIC_RUN_ID``; else, for several processes,
the master address and port; else a fresh random id), so a rerun finds an interrupted run's answers
only under the same id.
"""

from __future__ import annotations

from lmms_textdom.integration.hook import is_failure


class _FailuresUncached:
    """Stands in for the model in ``execute``: answers of failed requests go to it as None, which
    the cache neither stores nor serves (a stored JSON null reads as a miss), and are kept here."""

    def __init__(self, model):
        self.model = model
        self.failed: dict[int, list] = {}

    def generate_until(self, requests) -> list:
        outputs = self.model.generate_until(requests)
        for request, output in zip(requests, outputs):
            if is_failure(output):
                self.failed[id(request)] = output
        return [None if id(request) in self.failed else output for request, output in zip(requests, outputs)]


def install() -> None:
    """Route our models' requests through the response cache batch by batch (once per process)."""
    from lmms_eval.caching.response_cache import ResponseCache

    original = ResponseCache.execute
    if getattr(original, "_stores_each_batch", False):
        return

    def execute(self, lm, reqtype, requests):
        batches = getattr(lm, "response_batches", None)
        if reqtype != "generate_until" or batches is None or not requests:
            return original(self, lm, reqtype, requests)
        results: list = [None] * len(requests)
        with lm.responding(len(requests)) as run:
            for indices in batches(requests):
                model = _FailuresUncached(lm)
                chunk = [requests[i] for i in indices]
                for i, request, output in zip(indices, chunk, original(self, model, reqtype, chunk)):
                    results[i] = model.failed.get(id(request), output)
                run.progress.update(len(indices))
        return results

    execute._stores_each_batch = True
    ResponseCache.execute = execute
