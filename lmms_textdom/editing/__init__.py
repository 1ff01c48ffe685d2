"""Edits of the non-text tokens before the language model: pruning scores ([CLS] attention, attention
received in a ViT block), kept counts, and the splice that prunes or repeats spans for every family."""
