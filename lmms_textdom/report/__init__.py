"""Leaderboard and figures from lmms-eval outputs of many runs (numpy, matplotlib and the stdlib only).

runs (reading files) -> duplicates (latest wins) -> table (metric core + bootstrap) -> render / html
(Markdown, CSV, sortable page) and figures (PNG, SVG); command wires them to ``lmms-textdom report``.
"""
