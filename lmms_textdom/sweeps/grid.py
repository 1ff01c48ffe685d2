"""Running a grid of lmms-eval runs of one model: one real run per point, resumable.

Every sweep command (``sweep``, and its presets ``table2`` and ``knockout``) states its points; this
module resolves the checkpoint (the model's embedded default when none is given, offline), runs
each point into its own folder and writes ``textdom_point.json`` there when the run finished. A
point whose folder holds that file with the same command and a results file is not run again, so an
interrupted sweep resumes where it stopped.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from lmms_textdom.integration.runner import DEFAULT_CACHE, latest_results, lmms_eval_command, offline_env, run_checked
from lmms_textdom.progress import write
from lmms_textdom.tiny.defaults import embedded_setup

#: written into a point's folder once its run has finished: the command that made it
POINT_FILE = "textdom_point.json"


@dataclass(frozen=True)
class Point:
    name: str  # how tables call it
    folder: str  # under the grid's output folder
    model_args: str = ""  # beyond the grid's own
    gen_kwargs: str | None = None  # None: the grid's


@dataclass
class Grid:
    model: str
    pretrained: str
    model_args: str  # every point's (beyond pretrained)
    tasks: str
    output: Path
    gen_kwargs: str | None = None
    limit: int | None = None
    batch_size: int = 2
    device: str = "cpu"
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    embedded: bool = False  # the model's embedded default (random weights)

    @property
    def task(self) -> str:
        return self.tasks.split(",")[0]

    def args_of(self, point: Point) -> str:
        return ",".join(a for a in (f"pretrained={self.pretrained}", self.model_args, point.model_args) if a)

    def command(self, point: Point) -> list[str]:
        extra = ["--batch_size", str(self.batch_size), "--verbosity", "WARNING"] + (["--limit", str(self.limit)] if self.limit else [])
        gen_kwargs = self.gen_kwargs if point.gen_kwargs is None else point.gen_kwargs
        extra += ["--gen_kwargs", gen_kwargs] if gen_kwargs else []
        command = lmms_eval_command(self.model, self.args_of(point), self.tasks, self.output / point.folder, *extra)
        command[command.index("--device") + 1] = self.device
        return command

    def finished(self, point: Point) -> bool:
        marker = self.output / point.folder / POINT_FILE
        if not marker.is_file() or latest_results(self.output / point.folder) is None:
            return False
        try:
            return json.loads(marker.read_text()).get("command") == self.command(point)[1:]
        except ValueError:
            return False

    def run(self, point: Point) -> dict:
        """The point's lmms-eval results JSON: from its finished folder, else from a new run."""
        folder = self.output / point.folder
        if self.finished(point):
            write(f"done already: {point.name} ({folder})")
            return json.loads(latest_results(folder).read_text())
        write(f"running: {point.name} -> {folder}")
        command = self.command(point)
        results = run_checked(command, self.env, folder, quiet=True)
        # the interpreter path is left out: a resumed sweep may run from another environment
        (folder / POINT_FILE).write_text(json.dumps({"name": point.name, "command": command[1:]}, indent=1))
        return results


def make_grid(
    model: str, pretrained: str | None, model_args: str, tasks: str | None, output: Path, gen_kwargs: str | None = None,
    limit: int | None = None, batch_size: int = 2, device: str = "cpu", default_task: str | None = None,
) -> Grid:
    """A grid on ``pretrained``, or on the model's embedded default when it is None (its banner printed)."""
    if pretrained is None:
        setup = embedded_setup(model, DEFAULT_CACHE)
        print(setup.banner, flush=True)
        return Grid(
            model, setup.pretrained, ",".join(a for a in (setup.model_args, model_args) if a), tasks or default_task or setup.tasks,
            Path(output), setup.gen_kwargs if gen_kwargs is None else gen_kwargs, limit, batch_size, device,
            offline_env(setup.data_root), embedded=True,
        )  # fmt: skip
    return Grid(model, pretrained, model_args, tasks or default_task, Path(output), gen_kwargs, limit, batch_size, device)
