"""Views beyond the paper's three layer groups: layer knock-outs and the key space of each class.

``knockout`` (torch) edits the attention mask of chosen layers; ``key_sampler`` (torch) keeps a
bounded sample of each class's key vectors; ``key_space`` (numpy only) turns those samples into
divergences for the report.
"""
