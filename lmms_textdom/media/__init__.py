"""Decoding and sampling of non-text inputs (video frames, audio), with no model code."""
