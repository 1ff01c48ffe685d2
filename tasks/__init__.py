"""lmms-eval task folder of lmms-textdom (installed as ``lmms_textdom.tasks``)."""
