"""GraphGPT-7B (``Jiabin99/GraphGPT-7B-mix-all``): native Llama language model, our own graph transformer."""
