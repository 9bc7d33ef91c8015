"""The fine-stage reader: scores each utterance of a dialogue against a query (with its
neighbours as context) and decodes the scores into the exact ids: contiguous runs, several
allowed, and nothing at all when the answer is not in the chat. See ``features``, ``model``,
``decode``, ``train`` and ``stage``."""
