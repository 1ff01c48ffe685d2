"""The videollama3 family: VideoLLaMA3 (DAMO remote-code or native ``-HF`` layout) on transformers' native classes."""
