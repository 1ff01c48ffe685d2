"""The llava family: its lmms-eval adapter and what only it needs."""
