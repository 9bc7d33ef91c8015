"""Fragment Embedding Model: what a fragment looks like to it (``fragment_text``), contrastive
fine-tuning (``train``), evaluation against the base model (``evaluate``) and the asset stage
(``stage``). The frozen text encoder it fine-tunes is :mod:`ffr_lib.models.encoder`."""
