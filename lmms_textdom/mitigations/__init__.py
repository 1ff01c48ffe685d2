"""Training-free mitigation switches and the controls beside them (model_args of every family).

- ``attn_boost`` (PAI's score boost, or a mask bias) and ``attn_shift`` (VAF / ClearSight): the
  language model's attention to non-text keys in chosen layers, for the rows after the non-text
  span (``attention.py``, through the probe's mask-edit and score-edit hooks);
- ``vcd_*``: visual contrastive decoding against a noised copy of the non-text input
  (``noise.py``, ``contrastive.py``);
- ``blind``: the same prompt without the non-text input (``blind.py``).

``settings.py`` parses and checks them (no torch).
"""
