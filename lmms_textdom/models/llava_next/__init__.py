"""The llava_next family: its lmms-eval adapter and what only it needs."""
