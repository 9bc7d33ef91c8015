"""FFR library: fine-grained fragment retrieval for long multi-modal chats.

Pure Python; never imports dagster. Each subpackage is one stage of the pipeline:
``data`` (model, readers), ``db`` (Postgres + pgvector), ``mldr`` (training data builder),
``segment`` (fragment decomposition), ``fem`` (embedding model), ``index`` (pgvector index),
``f2rvlm`` (generative retriever), ``ffrs`` (two-stage corpus retrieval), ``evaluation``
(metrics and reports), ``tracking`` (MLflow).
"""

__version__ = "0.1.0"
