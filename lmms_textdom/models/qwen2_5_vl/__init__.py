"""The qwen2_5_vl family: its lmms-eval adapter and what only it needs."""
