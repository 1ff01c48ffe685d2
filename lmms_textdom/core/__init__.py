"""The measurement core: per-sample records and metric definitions (numpy only), position classes and
the attention probe (torch + transformers), loud errors. Never imports lmms-eval."""
