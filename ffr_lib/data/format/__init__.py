"""The text formats of the retrieval task, model-free: how a dialogue and a query become a prompt
(``prompt``), how an answer is written and parsed (``answer``), and the ms-swift sample that
carries both (``swift``). The F2RVLM reader, its rewards and the ms-swift reader all use them.
"""
