"""Long fragments: how many fragments the encoder's window cuts, and what embedding them in chunks
(``FragmentTextConfig.long_text = "chunk_mean"``, :class:`ffr_lib.fem.fragment_text.
ChunkedEmbedder`) gains over truncation (issue 14, "the index sees every word").

    .venv/bin/python bench/long_fragments.py                     # QMSum val + MLDR val, ~5 min
    .venv/bin/python bench/long_fragments.py --datasets qmsum --windows 256,128 --json out.json

Per dataset: the dialogues are cut with TextTiling exactly as the ``fragments`` asset cuts them
(:func:`ffr_lib.segment.stage.cut_dialogues`, ``FragmentStageConfig()``), the fragment texts are
the index's (:func:`ffr_lib.fem.fragment_text.fragment_rows`), and every fragment gets one vector
from the base MiniLM, truncated at the window or chunked (``chunk_mean``: the mean of the
chunks; ``best part``: the nearest of the chunks or the mean, as ``ffr.search_fragments`` scores
a fragment since migration 0008). Retrieval is scored as ``ffr eval``
scores it (:func:`ffr_lib.evaluation.metrics.ranking_metrics`): each query ranks the fragments
by cosine, its utterances are read in rank order, and recall@10 is the share of gold utterances
among the first 10 read (gold: :func:`ffr_lib.data.gold.gold_items`; QMSum: the union of a
specific query's relevant spans). Corpus mode ranks the fragments of every dialogue of the
split, single mode those of the query's own dialogue. ``MiniLM per utterance`` ranks single
utterances (one vector each, the TextTiling vectors): the reference a fragment index should
not lose to.

Data: QMSum val is read in place (``FFR_QMSUM_DIR``, default ``../shared/data/qmsum``) with the
``qmsum`` reader; MLDR val is ``$FFR_HOME/data/mldr/val`` when the ``mldr_splits`` asset wrote it,
else built from PhotoChat exactly as ``ffr eval --dataset mldr`` builds it (same 116 dialogues,
696 queries). Each distinct text is embedded once per window (the encoder's memo).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ffr_lib.data.dataset import Dataset  # noqa: E402
from ffr_lib.data.gold import gold_items  # noqa: E402
from ffr_lib.data.readers import read_dataset  # noqa: E402
from ffr_lib.data.readers.qmsum import read_qmsum  # noqa: E402
from ffr_lib.evaluation.metrics import ranking_metrics  # noqa: E402
from ffr_lib.fem.fragment_text import (  # noqa: E402
    ChunkedEmbedder,
    FragmentRow,
    FragmentTextConfig,
    fragment_rows,
)
from ffr_lib.mldr.splits import build_splits, split_dir  # noqa: E402
from ffr_lib.mldr.stage import load_split  # noqa: E402
from ffr_lib.models.encoder import TextEncoder  # noqa: E402
from ffr_lib.reporting import markdown_table  # noqa: E402
from ffr_lib.segment.stage import FragmentStageConfig, cut_dialogues  # noqa: E402
from ffr_lib.segment.texttiling import utterance_texts  # noqa: E402

KS = (1, 5, 10, 20)
TOP_FRAGMENTS = 200  # fragments read per query (recall@20 needs far fewer; MRR is cut there)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def mldr_val() -> tuple[Dataset, str]:
    if split_dir("val").exists():
        return load_split("val"), f"{split_dir('val')}"
    sources = read_dataset("-", "photochat")
    return build_splits(sources.dialogues)["val"], "built from PhotoChat (as `ffr eval` does)"


def load(name: str, qmsum_dir: str | None) -> tuple[Dataset, str]:
    if name == "qmsum":
        return read_qmsum(qmsum_dir, split="val"), "QMSum val"
    if name == "mldr":
        dataset, where = mldr_val()
        return dataset, f"MLDR val ({where})"
    raise ValueError(f"unknown dataset {name!r} (qmsum, mldr)")


def token_counts(encoder: TextEncoder, texts: Sequence[str]) -> np.ndarray:
    ids = encoder.tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]
    return np.array([len(i) for i in ids])


def rankings(
    scores: np.ndarray,
    units: Sequence[list[tuple[str, int]]],
    unit_dialogue: np.ndarray,
    query_dialogues: Sequence[str],
    mode: str,
) -> list[list[tuple[str, int]]]:
    """Per query: the utterances of the units in cosine order (corpus: all units; single: the
    units of the query's dialogue); ``scores`` is [queries, units]."""
    out = []
    for q, dialogue_id in enumerate(query_dialogues):
        row = scores[q]
        if mode == "single":
            row = np.where(unit_dialogue == dialogue_id, row, -np.inf)
        top = np.argsort(-row, kind="stable")[:TOP_FRAGMENTS]
        ranked: list[tuple[str, int]] = []
        for i in top:
            if not np.isfinite(row[i]):
                break
            ranked.extend(units[i])
        out.append(ranked)
    return out


def score(
    name: str,
    scores: np.ndarray,
    units: Sequence[list[tuple[str, int]]],
    unit_dialogue: np.ndarray,
    query_dialogues: Sequence[str],
    golds: Sequence[set[tuple[str, int]]],
) -> dict[str, Any]:
    result: dict[str, Any] = {"system": name}
    for mode in ("corpus", "single"):
        ranked = rankings(scores, units, unit_dialogue, query_dialogues, mode)
        result[mode] = ranking_metrics(ranked, golds, KS)
    return result


def run_dataset(name: str, args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.perf_counter()
    dataset, label = load(name, args.qmsum_dir)
    dialogues = dataset.dialogues
    by_id = dataset.dialogue_by_id()
    queries = [
        q for q in dataset.queries if q.dialogue_id in by_id and gold_items(q, by_id[q.dialogue_id])
    ]
    log(f"{label}: {len(dialogues)} dialogues, {len(queries)} queries with gold")

    t = time.perf_counter()
    fragments = cut_dialogues(list(dialogues), FragmentStageConfig())
    seconds_cut = time.perf_counter() - t
    per_dialogue: dict[str, list] = {}
    for fragment in fragments:
        per_dialogue.setdefault(fragment.dialogue_id, []).append(fragment)
    text_config = FragmentTextConfig(ocr=False)
    rows: list[FragmentRow] = [
        r for d in dialogues for r in fragment_rows(d, per_dialogue.get(d.id, []), text_config)
    ]
    log(f"TextTiling: {len(rows)} fragments in {seconds_cut:.0f} s")

    base = TextEncoder.get("minilm")
    texts = [r.text for r in rows]
    tokens = token_counts(base, texts)
    special = base.tokenizer.num_special_tokens_to_add(pair=False)
    words = [len(t.split()) for t in texts]
    lengths: dict[str, Any] = {
        "dataset": label,
        "dialogues": len(dialogues),
        "queries": len(queries),
        "fragments": len(rows),
        "utterances_mean": statistics.mean(len(r.utterance_ids) for r in rows),
        "words_mean": statistics.mean(words),
        "tokens_mean": float(tokens.mean()),
        "tokens_p90": float(np.percentile(tokens, 90)),
        "seconds_cut": seconds_cut,
    }
    for window in (128, 256, 512):
        lengths[f"share_over_{window}"] = float(np.mean(tokens + special > window))

    units = [[(r.dialogue_id, u) for u in sorted(r.utterance_ids)] for r in rows]
    unit_dialogue = np.array([r.dialogue_id for r in rows])
    query_dialogues = [q.dialogue_id or "" for q in queries]
    golds = [{(q.dialogue_id, u) for u in gold_items(q, by_id[q.dialogue_id])} for q in queries]
    query_texts = [q.text for q in queries]

    systems: list[dict[str, Any]] = []
    # Reference: one vector per utterance (the vectors TextTiling embedded: memo hits).
    utt_units = [[(d.id, i)] for d in dialogues for i in range(len(d.utterances))]
    utt_texts = [t for d in dialogues for t in utterance_texts(d)]
    utt_vectors = np.zeros((len(utt_texts), base.dimension), np.float32)
    spoken = [i for i, t in enumerate(utt_texts) if t]  # an empty turn scores 0
    utt_vectors[spoken] = base.encode([utt_texts[i] for i in spoken])
    utt_dialogue = np.array([u[0][0] for u in utt_units])
    qv = base.encode(query_texts)
    ref = score(
        "MiniLM per utterance (reference)",
        qv @ utt_vectors.T,
        utt_units,
        utt_dialogue,
        query_dialogues,
        golds,
    )
    systems.append({**ref, "window": None, "long_text": "-"})

    for window in args.windows:
        if window == base.max_seq_length:
            encoder = base
        else:
            encoder = TextEncoder("minilm")  # its own memo: vectors of another window
            encoder.model.max_seq_length = window
        qv = encoder.encode(query_texts)
        t = time.perf_counter()
        truncated = encoder.encode(texts, desc=f"truncate at {window}")
        seconds_truncate = time.perf_counter() - t
        chunker = ChunkedEmbedder(encoder)
        budget = chunker.budget()
        long = [i for i, n in enumerate(tokens) if n > budget]
        n_chunks = sum(len(chunker.chunks(texts[i])) for i in long)
        t = time.perf_counter()
        chunked, parts = chunker.encode_parts(texts, desc=f"chunks at {window}")
        seconds_chunks = time.perf_counter() - t
        # The search since migration 0008: a fragment scores as its nearest part or its mean.
        best_part = qv @ chunked.T
        for i in long:
            best_part[:, i] = np.maximum(best_part[:, i], (qv @ parts[i].T).max(axis=1))
        log(
            f"window {window}: {len(long)} long fragments -> {n_chunks} chunks "
            f"(truncate {seconds_truncate:.0f} s, chunks {seconds_chunks:.0f} s more)"
        )
        for method, scores, seconds in (
            ("truncate", qv @ truncated.T, seconds_truncate),
            ("chunk_mean", qv @ chunked.T, seconds_chunks),
            ("best part", best_part, seconds_chunks),
        ):
            result = score(
                f"MiniLM fragments, {method}",
                scores,
                units,
                unit_dialogue,
                query_dialogues,
                golds,
            )
            systems.append(
                {
                    **result,
                    "window": window,
                    "long_text": method,
                    "seconds_embed": seconds,
                    "long_fragments": len(long),
                    "chunks": n_chunks,
                }
            )
    lengths["seconds_total"] = time.perf_counter() - t0
    log(f"{label}: done in {lengths['seconds_total']:.0f} s")
    return {"lengths": lengths, "systems": systems}


def tables(results: Sequence[dict[str, Any]]) -> str:
    length_rows = []
    for r in results:
        x = r["lengths"]
        length_rows.append(
            [
                x["dataset"],
                x["dialogues"],
                x["fragments"],
                f"{x['utterances_mean']:.1f}",
                f"{x['words_mean']:.0f}",
                f"{x['tokens_mean']:.0f} / {x['tokens_p90']:.0f}",
                f"{x['share_over_128']:.1%}",
                f"{x['share_over_256']:.1%}",
                f"{x['share_over_512']:.1%}",
            ]
        )
    lines = markdown_table(
        [
            "dataset",
            "dialogues",
            "fragments",
            "utterances / fragment",
            "words / fragment",
            "tokens mean / p90",
            "> 128 tokens",
            "> 256 tokens",
            "> 512 tokens",
        ],
        length_rows,
    )
    score_rows = []
    for r in results:
        x = r["lengths"]
        for s in r["systems"]:
            c, g = s["corpus"], s["single"]
            score_rows.append(
                [
                    x["dataset"].split(" (")[0],
                    s["system"],
                    s["window"] or "-",
                    f"{c['recall@10']:.3f}",
                    f"{c['hit@10']:.3f}",
                    f"{c['mrr']:.3f}",
                    f"{g['recall@10']:.3f}",
                    f"{g['hit@10']:.3f}",
                    int(c["n_queries"]),
                ]
            )
    lines += [""] + markdown_table(
        [
            "dataset",
            "vectors",
            "window",
            "corpus recall@10",
            "corpus hit@10",
            "corpus MRR",
            "single recall@10",
            "single hit@10",
            "queries",
        ],
        score_rows,
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="qmsum,mldr", help="comma list: qmsum, mldr")
    parser.add_argument(
        "--windows",
        default="256",
        type=lambda s: [int(w) for w in s.split(",") if w],
        help="encoder windows (max_seq_length) to embed with; 256 is MiniLM's own",
    )
    parser.add_argument("--qmsum-dir", default=None, help="default: FFR_QMSUM_DIR")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    results = [run_dataset(name, args) for name in args.datasets.split(",") if name]
    print(tables(results))
    print(f"\n{time.perf_counter() - t0:.0f} s in all")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
