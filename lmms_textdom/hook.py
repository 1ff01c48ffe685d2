"""Stable import path of the metric hook for task code and task YAML written against earlier releases
(``!function lmms_textdom.hook.group_mean``, ``from lmms_textdom.hook import with_textdom``).
The hook lives in :mod:`lmms_textdom.integration.hook`."""

from lmms_textdom.integration.hook import *  # noqa: F401,F403
from lmms_textdom.integration.hook import __all__  # noqa: F401
