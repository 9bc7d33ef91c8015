"""The reader's scorer over standardised utterance features: a one-hidden-layer perceptron (the
default; fitted with torch, a few hundred thousand rows in about a minute on 2 cores), or an
L2-regularised logistic regression (``hidden`` 0; full-batch Newton steps, seconds). The
perceptron learns what a linear score cannot: that the same BM25 burst means a 50-turn
discussion in a meeting and a 3-turn exchange in a chat (micro F1 on held-aside QMSum train
meetings 0.40 linear vs 0.45, BENCHMARKS.md). Saved as one JSON file with its feature names, scaling, weights and decoding, so a
checkpoint is readable, diffable and needs no pickle."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from pydantic import BaseModel, Field

from ffr_lib.reader.decode import DecodeConfig, compose_answer
from ffr_lib.reader.features import FEATURES
from ffr_lib.threads import torch_threads

FORMAT = "ffr-reader/1"


class Logistic(BaseModel):
    """One logistic regression over standardised inputs (the query-level heads)."""

    mean: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float

    def probability(self, x: np.ndarray) -> np.ndarray:
        z = (np.asarray(x, float) - np.asarray(self.mean)) / np.asarray(self.scale)
        return 1.0 / (1.0 + np.exp(-(z @ np.asarray(self.coef) + self.intercept)))

    @classmethod
    def fit(
        cls, x: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None, l2: float = 1.0
    ) -> Logistic:
        mean, scale, coef, intercept = fit_logistic(x, y, weights, l2=l2)
        return cls(
            mean=mean.tolist(), scale=scale.tolist(), coef=coef.tolist(), intercept=intercept
        )


class QueryHeads(BaseModel):
    """What the query asks for, decided once per query: its words say whether it wants
    utterances, an image, or both ("the photo of the dog" wants the image, not the lines around
    it), and the evidence in the dialogue says whether it is answered there at all. Each head is
    None when its training data could not teach it (no image queries, no negative queries)."""

    utterances: Logistic | None = Field(
        None, description="P(the answer has utterances) from the query vector"
    )
    images: Logistic | None = Field(
        None, description="P(the answer has images) from the query vector"
    )
    answer: Logistic | None = Field(
        None, description="P(the dialogue answers the query) from its evidence (query_evidence)"
    )
    utterances_min: float = Field(0.5, ge=0, le=1, description="keep utterances above this")
    images_min: float = Field(0.5, ge=0, le=1, description="name images above this")
    answer_min: float = Field(0.0, ge=0, le=1, description="abstain below this")

    def outputs(self, query_vector: np.ndarray, evidence: Callable[[], np.ndarray]) -> HeadOutputs:
        """What each head says of one query (None where there is no head); ``evidence`` is
        computed only when there is an answer head."""

        def say(head: Logistic | None, x: Callable[[], np.ndarray]) -> float | None:
            return None if head is None else float(head.probability(x()[None])[0])

        return HeadOutputs(
            say(self.utterances, lambda: query_vector),
            say(self.images, lambda: query_vector),
            say(self.answer, evidence),
        )

    def compose(
        self,
        ids: Sequence[int],
        probabilities: np.ndarray,
        image_owners: dict[int, int],
        outputs: HeadOutputs,
    ) -> tuple[list[int], list[int]]:
        """(utterance ids, image ids) of the answer: the decoded runs ``ids`` under these
        heads' outputs and thresholds (:func:`ffr_lib.reader.decode.compose_answer`)."""
        return compose_answer(
            ids,
            probabilities,
            image_owners,
            wants_utterances=outputs.wants_utterances,
            wants_images=outputs.wants_images,
            answerable=outputs.answerable,
            utterances_min=self.utterances_min,
            images_min=self.images_min,
            answer_min=self.answer_min,
        )


class HeadOutputs(NamedTuple):
    """The query-level heads' probabilities for one query (None: no such head)."""

    wants_utterances: float | None = None
    wants_images: float | None = None
    answerable: float | None = None


class ReaderWeights(BaseModel):
    """Everything needed to score and decode: one checkpoint."""

    features: list[str] = Field(default_factory=lambda: list(FEATURES))
    mean: list[float]
    scale: list[float]
    hidden: list[list[float]] | None = Field(
        None, description="[units, features] weights of the hidden ReLU layer (None: linear)"
    )
    hidden_bias: list[float] | None = None
    coef: list[float] = Field(description="output weights over the hidden units (or features)")
    intercept: float
    decode: DecodeConfig = Field(
        default_factory=DecodeConfig, description="decoding of dialogues up to long_turns turns"
    )
    decode_long: DecodeConfig | None = Field(
        None, description="decoding of longer dialogues (None = the same as decode)"
    )
    long_turns: int = Field(
        60,
        ge=1,
        description="dialogues with more turns decode with decode_long (meetings, "
        "year-long chats: their answers are longer runs among many more turns)",
    )
    encoder: str = Field("minilm", description="dense encoder the features were computed with")
    heads: QueryHeads = Field(
        default_factory=QueryHeads, description="query-level decisions (none in old checkpoints)"
    )
    reference_decode: DecodeConfig | None = Field(
        None,
        description="decoding of the untrained reference scorer (BM25 + encoder z-scores), "
        "tuned on the same held-aside queries: the baseline decoded as well as the reader is",
    )
    reference_decode_long: DecodeConfig | None = Field(
        None, description="the reference scorer's decoding of dialogues over long_turns turns"
    )
    metrics: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def untrained(cls, encoder: str = "minilm") -> ReaderWeights:
        """The reference scorer: each utterance's BM25 and encoder z-scores summed (through a
        sigmoid), nothing learned. What the trained weights must beat under the same decoding."""
        coef = [float(name in ("bm25_z", "dense_z")) for name in FEATURES]
        return cls(
            mean=[0.0] * len(FEATURES),
            scale=[1.0] * len(FEATURES),
            coef=coef,
            intercept=0.0,
            encoder=encoder,
        )

    def reference(self) -> ReaderWeights | None:
        """The untrained reference scorer with the decoding tuned for it beside these weights
        (None in checkpoints trained before it existed)."""
        if self.reference_decode is None:
            return None
        return ReaderWeights.untrained(self.encoder).model_copy(
            update={
                "decode": self.reference_decode,
                "decode_long": self.reference_decode_long,
                "long_turns": self.long_turns,
            }
        )

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        if list(FEATURES) != self.features:
            missing = sorted(set(self.features) - set(FEATURES)) or "their order"
            raise ValueError(
                f"this reader checkpoint reads features this code no longer computes ({missing}); "
                "train a new one: materialize reader_checkpoint"
            )
        z = (np.asarray(features, float) - np.asarray(self.mean)) / np.asarray(self.scale)
        if self.hidden is not None:
            z = np.maximum(z @ np.asarray(self.hidden).T + np.asarray(self.hidden_bias), 0.0)
        return 1.0 / (1.0 + np.exp(-(z @ np.asarray(self.coef) + self.intercept)))

    def decoding_for(self, turns: int) -> DecodeConfig:
        """The decoding of a dialogue of ``turns`` utterances."""
        if turns > self.long_turns and self.decode_long is not None:
            return self.decode_long
        return self.decode

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"format": FORMAT, **self.model_dump(mode="json")}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload, indent=1), encoding="utf-8")
        tmp.replace(path)  # a reader never sees a half-written checkpoint
        return path

    @classmethod
    def load(cls, path: Path) -> ReaderWeights:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if data.pop("format", None) != FORMAT:
            raise ValueError(f"{path}: not a reader checkpoint ({FORMAT})")
        return cls.model_validate(data)


def standardisation(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and scale of ``x`` (a constant column keeps scale 1)."""
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-9] = 1.0
    return mean, scale


def fit_logistic(
    features: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray | None = None,
    l2: float = 1.0,
    steps: int = 25,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(mean, scale, coef, intercept) of a logistic regression on standardised ``features``.
    ``weights`` are per-row sample weights (e.g. to balance queries of different lengths)."""
    x = np.asarray(features, float)
    y = np.asarray(labels, float)
    w = np.ones(len(y)) if weights is None else np.asarray(weights, float)
    mean, scale = standardisation(x)
    design = np.hstack([(x - mean) / scale, np.ones((len(x), 1))])
    theta = np.zeros(design.shape[1])
    penalty = np.full(design.shape[1], l2)
    penalty[-1] = 0.0  # the intercept is not shrunk
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(design @ theta)))
        gradient = design.T @ (w * (p - y)) + penalty * theta
        hessian = (design * (w * p * (1 - p))[:, None]).T @ design + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hessian, gradient)
        theta -= step
        if float(np.abs(step).max()) < 1e-7:
            break
    return mean, scale, theta[:-1], float(theta[-1])


class Perceptron(NamedTuple):
    """A fitted one-hidden-layer scorer (see :class:`ReaderWeights`)."""

    mean: np.ndarray
    scale: np.ndarray
    hidden: np.ndarray
    hidden_bias: np.ndarray
    coef: np.ndarray
    intercept: float

    def weights(self, encoder: str = "minilm") -> ReaderWeights:
        """These parameters as a reader checkpoint over :data:`FEATURES`."""
        return ReaderWeights(
            mean=self.mean.tolist(),
            scale=self.scale.tolist(),
            hidden=self.hidden.tolist(),
            hidden_bias=self.hidden_bias.tolist(),
            coef=self.coef.tolist(),
            intercept=self.intercept,
            encoder=encoder,
        )


def fit_perceptron(
    features: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    units: int = 64,
    epochs: int = 30,
    weight_decay: float = 1e-3,
    batch_size: int = 4096,
    seed: int = 0,
) -> Perceptron:
    """A one-hidden-layer ReLU perceptron on standardised ``features``, trained with Adam on the
    ``weights``-weighted logistic loss (reproducible for a given ``seed``)."""
    import torch

    x = np.asarray(features, float)
    mean, scale = standardisation(x)
    w = np.ones(len(x)) if weights is None else np.asarray(weights, float)
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.tensor((x - mean) / scale, dtype=torch.float32)
    targets = torch.tensor(np.asarray(labels, float), dtype=torch.float32)
    row_weights = torch.tensor(w / w.mean(), dtype=torch.float32)
    with torch_threads():
        torch.manual_seed(seed)
        network = torch.nn.Sequential(
            torch.nn.Linear(x.shape[1], units), torch.nn.ReLU(), torch.nn.Linear(units, 1)
        )
        optimiser = torch.optim.Adam(network.parameters(), lr=3e-3, weight_decay=weight_decay)
        loss_of = torch.nn.functional.binary_cross_entropy_with_logits
        for _ in range(epochs):
            order = torch.randperm(len(inputs), generator=generator)
            for start in range(0, len(inputs), batch_size):
                batch = order[start : start + batch_size]
                logits = network(inputs[batch]).squeeze(1)
                loss = (
                    loss_of(logits, targets[batch], reduction="none") * row_weights[batch]
                ).mean()
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
    first, last = network[0], network[2]
    return Perceptron(
        mean,
        scale,
        first.weight.detach().double().numpy(),
        first.bias.detach().double().numpy(),
        last.weight.detach().double().numpy()[0],
        float(last.bias.detach()[0]),
    )
