"""Views beyond the paper's three layer groups: layer knock-outs and the key space of each class.

``layers`` parses layer specifications (no torch); ``knockout`` (torch) edits the attention mask of
chosen layers and scores the unmasked answer under the knock-out; ``key_sampler`` (torch) keeps a
bounded sample of each class's key vectors; ``session`` runs one generate call under either;
``key_space`` (numpy only) turns the key samples into divergences for the report.
"""
