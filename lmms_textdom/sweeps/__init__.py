"""Commands that run lmms-eval many times and tabulate the runs (the paper's Table 2)."""
