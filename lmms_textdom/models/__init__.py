"""lmms-eval model adapters (``*_textdom``)."""
