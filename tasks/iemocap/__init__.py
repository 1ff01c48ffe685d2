"""IEMOCAP speech emotion recognition, the standard 4-class set-up, plus MDI/AEI through the textdom hook.

Data: the hub copy Zahra99/IEMOCAP_Audio (sessions 1-5 evaluated together) or its local snapshot.
Prompt: Qwen2-Audio's own emotion evaluation ("Recognize the emotion with keywords in English:").
Scoring: free-text answers mapped onto the four classes by ``answers.map_answer``.
"""
