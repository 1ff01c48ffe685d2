"""The qwen2_audio family: its lmms-eval adapter and what only it needs."""
