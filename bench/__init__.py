"""The commssl benchmark (``python -m bench``); see ``run.py``."""
