"""Keep third-party noise off the terminal unless asked: transformers' "Loading weights" bars and
advisory warnings, FutureWarnings, and debug lines that libraries log on their own (bm25s logs
"Building index from tokens" at DEBUG for every index it builds, one per query in an
evaluation). FFR's own progress lines (``ffr_lib.progress``) are not affected.

Call :func:`quiet_libraries` before the libraries are imported: transformers reads its verbosity
and progress-bar switches from the environment at import time.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

# Loggers of libraries that log below WARNING on their own; only warnings and errors pass.
NOISY_LOGGERS = ("bm25s", "httpx", "sentence_transformers", "transformers", "huggingface_hub")

# Environment switches the libraries read at import; set only where the user has not set them.
QUIET_ENVIRONMENT = {
    "TRANSFORMERS_VERBOSITY": "error",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
}


def _warning_or_worse(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING


def quiet_libraries(verbose: bool = False) -> None:
    """Silence library chatter (``verbose=False``) or let all of it through (``verbose=True``).

    A filter on the logger, not a level: bm25s sets its own logger to DEBUG when it is imported,
    which would undo a level set before the (lazy) import."""
    for name in NOISY_LOGGERS:
        logger = logging.getLogger(name)
        if verbose:
            logger.removeFilter(_warning_or_worse)
        elif _warning_or_worse not in logger.filters:
            logger.addFilter(_warning_or_worse)
    if verbose:
        return
    for key, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    warnings.filterwarnings("ignore", category=FutureWarning)
    if "transformers" in sys.modules:  # imported already: the environment is read too late
        from transformers.utils import logging as transformers_logging

        transformers_logging.set_verbosity_error()
        transformers_logging.disable_progress_bar()
