"""Package layout only (metadata lives in pyproject.toml).

The repository's top-level ``tasks/`` folder is installed as ``lmms_textdom.tasks`` so that the task
YAMLs and their Python helpers sit next to the installed code, where lmms-eval is pointed at them.
"""

from setuptools import find_packages, setup

task_packages = ["lmms_textdom." + name for name in find_packages(include=["tasks", "tasks.*"])]
setup(
    packages=find_packages(include=["lmms_textdom", "lmms_textdom.*"]) + task_packages,
    package_dir={"lmms_textdom.tasks": "tasks"},
)
