"""The kimi_vl family: Kimi-VL-A3B (MoonViT + DeepSeek-V3 MoE) on transformers' native kimi_k25 classes."""
