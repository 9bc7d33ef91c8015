"""Evaluation: the systems compared (``systems``: the registry; ``baselines``: the systems), the
reference set metrics, per-query and ranking metrics (``metrics``), the harness running every
system on the same corpus (``harness``), the report (``report``) and one run end to end
(``run``). Import from the modules: this package loads nothing, so the registry's names are
cheap to read (the CLI help)."""
