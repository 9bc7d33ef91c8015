"""FFR library: fine-grained fragment retrieval for long multi-modal chats.

Pure Python; never imports dagster. Each subpackage is one stage of the pipeline, in layers that
import only downwards (the contract is ``[tool.importlinter]`` in pyproject.toml):

- ``cli`` (the `ffr` command), over ``evaluation`` (metrics, systems and reports), over ``ffrs``
  (two-stage corpus retrieval), over ``f2rvlm`` (the generative retriever), over ``index``
  (pgvector index), over ``fem`` (fragment embedding model), over ``segment`` (fragment
  decomposition), ``mldr`` (training data builder) and ``inbox`` (file drop ingestion), over
  ``store`` (dialogues in Postgres);
- the ground: ``data`` (the model, the prompt / answer / ms-swift text formats, gold helpers,
  readers), ``db`` (Postgres + pgvector), ``models`` (weights and the frozen text encoder),
  ``ocr``, ``tracking`` (MLflow), and below them ``settings``, ``progress``, ``threads``,
  ``services``.
"""

__version__ = "0.1.0"
