"""Evaluate component: score the test split with the served function, write predictions and metrics.

metrics.json (every value a number or null; null with a "note" where a metric is undefined):

    n_test
    tasks.<binary task>: auc, logloss, positive_rate, n,
        gauc, gauc_users     per-user AUC weighted by the user's impressions, over the users
                             (spec user key) that have both classes; gauc_users counts them
        calibration          {pred_obs_ratio: mean score / positive rate,
                              ece: expected calibration error, ECE_BINS = 10 equal-width bins}
        multi_auc            {<partner task>: Multi-AUC of this task's score}, only for binary
                             tasks in a parent/child pair of the spec or paired by CrossDistil
                             (its `partners`) (DESIGN section 4): the four
                             (this, partner) label classes ordered (1,1) > (1,0) > (0,1) > (0,0),
                             i.e. ++ > +- > -+ > -- for the parent and ++ > -+ > +- > -- for the
                             child in (parent, child) notation
    tasks.<regression task>: mse, rmse, n
    consistency          only when the spec has a regression task and another task:
        {<regression task>: {<other task>: {ratio, reverse_ratio, pairs, n}}}
        DML's consistency ratio (section 3.2): among test row pairs with different values of the
        regression label (the graded reference, e.g. the rating), the share in which both tasks'
        scores order the pair like the reference (strictly); reverse_ratio the share in which
        both order it the other way. Needs a graded reference (at most CONSISTENCY_MAX_LEVELS
        distinct values), else null with a note.

    heads                only with a transfer method that makes further predictions beside the
                         served ones: {<head>: {<task>: the task metrics above, without gauc}}, e.g.
                         CrossDistil's "teacher" heads (AUC and Multi-AUC of the calibrated
                         teachers) or EKTM's "original" prediction.

Each metric uses the rows where its labels are present (NaN labels are left out).

The test split is read in streaming batches of BATCH_ROWS rows (core.splits.iter_batches): only
the row ids, labels, user ids and scores of all rows are held, never the test rows' features, and
the metrics are computed over those whole arrays, so they are exact. The scores are bit for bit
those of scoring the split in one frame (StreamScorer). A row group that cannot be read fails the
step naming its file and index (core.splits.SplitReadError); none is skipped.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from core import splits
from core.encoders import Encoders
from models.build import load_trained
from models.multitask import MultiTaskModel, ServingModel
from core import metrics
from core.atomic import atomic_path, write_json
from core.config import Params
from core.device import pick_device
from core.layout import RunFiles
from core.registry import sha256_file
from core.spec import ROW_ID, DatasetSpec
from core.context import RunContext


@dataclass(frozen=True)
class EvaluateResult:
    """What evaluate wrote: metrics.json (every metric) and predictions.parquet; the headline
    numbers are repeated here for the CLI and the XCom."""

    n_test: int
    metrics: Path
    predictions: Path
    auc: dict[str, float | None]      # binary task -> test AUC (None: undefined, one class only)
    rmse: dict[str, float | None]     # regression task -> test RMSE


FORWARD_ROWS = 8192  # rows per model forward when scoring


@torch.no_grad()
def score_frame(model: MultiTaskModel | ServingModel, encoders: Encoders, df: pd.DataFrame,
                batch_size: int = FORWARD_ROWS) -> dict[str, np.ndarray]:
    """Encode df and score it: task -> N float64 (probability for binary, value for regression)."""
    return score_encoded(model, *encoders.transform(df), batch_size=batch_size)


@torch.no_grad()
def score_encoded(model: MultiTaskModel | ServingModel, cat: np.ndarray, num: np.ndarray,
                  batch_size: int = FORWARD_ROWS) -> dict[str, np.ndarray]:
    """Score encoded rows (Encoders.transform) with the served function, batch_size rows per forward."""
    serving = model if isinstance(model, ServingModel) else ServingModel(model)
    serving.eval()
    device = next(serving.parameters()).device
    parts: list[list[np.ndarray]] = [[] for _ in serving.output_names]
    for start in range(0, len(cat), batch_size):
        outs = serving(torch.from_numpy(cat[start:start + batch_size]).to(device),
                       torch.from_numpy(num[start:start + batch_size]).to(device))
        for i, o in enumerate(outs):
            parts[i].append(o.float().cpu().numpy())
    return {name: (np.concatenate(p) if p else np.zeros(0)).astype(np.float64)
            for name, p in zip(serving.output_names, parts)}


@torch.no_grad()
def score_heads(model: MultiTaskModel, encoders: Encoders, df: pd.DataFrame, heads: list[str],
                batch_size: int = FORWARD_ROWS) -> dict[str, dict[str, np.ndarray]]:
    """A transfer method's further prediction sets (CrossDistil's teachers, EKTM's original
    prediction): head -> task -> N float64, sigmoid applied to binary tasks."""
    return score_heads_encoded(model, *encoders.transform(df), heads, batch_size=batch_size)


@torch.no_grad()
def score_heads_encoded(model: MultiTaskModel, cat: np.ndarray, num: np.ndarray, heads: list[str],
                        batch_size: int = FORWARD_ROWS) -> dict[str, dict[str, np.ndarray]]:
    """score_heads of encoded rows (Encoders.transform), batch_size rows per forward."""
    model.eval()
    kinds = dict(model.tasks)
    device = next(model.parameters()).device
    parts: dict[str, dict[str, list[np.ndarray]]] = {h: {} for h in heads}
    for start in range(0, len(cat), batch_size):
        out = model(torch.from_numpy(cat[start:start + batch_size]).to(device),
                    torch.from_numpy(num[start:start + batch_size]).to(device))
        for h in heads:
            for task, v in out.heads[h].items():
                v = v.sigmoid() if kinds[task] == "binary" else v
                parts[h].setdefault(task, []).append(v.float().cpu().numpy())
    return {h: {t: np.concatenate(p).astype(np.float64) for t, p in tasks.items()} for h, tasks in parts.items()}


class StreamScorer:
    """Scores rows fed in batches of any sizes exactly as score_frame and score_heads score them all
    at once. A float32 forward rounds differently for different batch shapes (last-bit differences),
    so every forward takes FORWARD_ROWS rows counted from the first row fed, whatever the batches
    were: encoded rows wait here (fewer than FORWARD_ROWS) until a forward is full."""

    def __init__(self, model: MultiTaskModel, encoders: Encoders, heads: list[str]):
        self.model, self.encoders, self.heads = model, encoders, heads
        self._cat = np.zeros((0, len(encoders.categorical)), dtype=np.int64)     # rows awaiting a forward
        self._num = np.zeros((0, len(encoders.numeric)), dtype=np.float32)
        self._scores: dict[str, list[np.ndarray]] = {}
        self._head_scores: dict[str, dict[str, list[np.ndarray]]] = {h: {} for h in heads}

    def add(self, batch: pd.DataFrame) -> None:
        cat, num = self.encoders.transform(batch)
        cat, num = np.concatenate([self._cat, cat]), np.concatenate([self._num, num])
        full = len(cat) - len(cat) % FORWARD_ROWS
        self._score(cat[:full], num[:full])
        self._cat, self._num = cat[full:], num[full:]

    def finish(self) -> tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]]]:
        """(scores as score_frame gives them, head scores as score_heads gives them) of every row fed."""
        self._score(self._cat, self._num)
        self._cat, self._num = self._cat[:0], self._num[:0]
        scores = {name: np.concatenate(parts) for name, parts in self._scores.items()}
        head_scores = {h: {t: np.concatenate(parts) for t, parts in per_task.items()}
                       for h, per_task in self._head_scores.items()}
        return scores, head_scores

    def _score(self, cat: np.ndarray, num: np.ndarray) -> None:
        if not len(cat):
            return
        for name, score in score_encoded(self.model, cat, num, batch_size=FORWARD_ROWS).items():
            self._scores.setdefault(name, []).append(score)
        if self.heads:
            for head, per_task in score_heads_encoded(self.model, cat, num, self.heads,
                                                      batch_size=FORWARD_ROWS).items():
                for task, score in per_task.items():
                    self._head_scores[head].setdefault(task, []).append(score)


CONSISTENCY_MAX_LEVELS = 64  # distinct reference values the consistency ratio accepts (ratings: 5)


def task_metrics(kind: str, y: np.ndarray, score: np.ndarray, groups: np.ndarray | None = None) -> dict:
    """Metrics of one task over rows with a label (NaN labels are left out and not counted).

    groups (one user id per row) adds gauc/gauc_users to a binary task."""
    keep = np.isfinite(y)
    y, score = y[keep], score[keep]
    n = int(y.size)
    if kind == "regression":
        if n == 0:
            return {"mse": None, "rmse": None, "n": 0, "note": "no labelled test rows"}
        return {"mse": metrics.mse(y, score), "rmse": metrics.rmse(y, score), "n": n}
    out: dict = {"auc": None, "logloss": None, "positive_rate": None, "n": n}
    if groups is not None:
        out |= {"gauc": None, "gauc_users": 0}
    out["calibration"] = None
    if n == 0:
        return out | {"note": "no labelled test rows"}
    out |= {"logloss": metrics.log_loss(y, score), "positive_rate": float(np.mean(y > 0.5)),
            "calibration": metrics.calibration(y, score, metrics.ECE_BINS)}
    if 0.0 < out["positive_rate"] < 1.0:
        out["auc"] = metrics.auc(y, score)
    else:
        out["note"] = f"AUC undefined: every test label is {int(out['positive_rate'])}"
    if groups is not None:
        g = np.asarray(groups)[keep]
        out["gauc_users"] = metrics.gauc_groups(y, g)
        if out["gauc_users"]:
            out["gauc"] = metrics.gauc(y, score, g)
    return out


def funnel_pairs(spec: DatasetSpec) -> list[tuple[str, str]]:
    """(parent, child) pairs of binary tasks declared in the spec."""
    kinds = {t.name: t.type for t in spec.tasks}
    return [(t.parent, t.name) for t in spec.tasks
            if t.parent and kinds.get(t.parent) == "binary" and t.type == "binary"]


def multi_auc_pairs(spec: DatasetSpec, model: MultiTaskModel) -> list[tuple[str, str]]:
    """(task, partner) pairs whose Multi-AUC is reported: both directions of each funnel pair of
    the spec, and each CrossDistil task with its partner (models.transfer.crossdistil)."""
    pairs: list[tuple[str, str]] = []
    for parent, child in funnel_pairs(spec):
        pairs += [(parent, child), (child, parent)]
    pairs += list(getattr(model.transfer, "partners", {}).items())
    return list(dict.fromkeys(pairs))


def multi_auc_of(y_self: np.ndarray, y_partner: np.ndarray, score: np.ndarray) -> float | None:
    """Multi-AUC of score over the rows with both labels; None when fewer than two classes occur."""
    keep = np.isfinite(y_self) & np.isfinite(y_partner)
    classes = 2 * (y_self[keep] > 0.5) + (y_partner[keep] > 0.5)
    if np.unique(classes).size < 2:
        return None
    return metrics.multi_auc(y_self[keep], y_partner[keep], score[keep])


def consistency_metrics(spec: DatasetSpec, labels: pd.DataFrame, scores: dict[str, np.ndarray]) -> dict | None:
    """DML consistency ratio of every other task's score with each regression task's score,
    against that regression task's label; None when the spec has no such pair of tasks."""
    references = [t.name for t in spec.tasks if t.type == "regression"]
    if not references or len(spec.tasks) < 2:
        return None
    out: dict = {}
    for ref in references:
        y = labels[ref].to_numpy(dtype=np.float64)
        keep = np.isfinite(y)
        out[ref] = {}
        for task in spec.task_names:
            if task == ref:
                continue
            entry: dict = {"ratio": None, "reverse_ratio": None, "pairs": 0, "n": int(keep.sum())}
            try:
                entry |= metrics.consistency_ratio(y[keep], scores[task][keep], scores[ref][keep],
                                                   max_levels=CONSISTENCY_MAX_LEVELS)
            except ValueError as err:                 # one reference value only, or not graded
                entry["note"] = str(err)
            out[ref][task] = entry
    return out


BATCH_ROWS = 65536  # test rows decoded, encoded and scored at a time (core.splits.iter_batches)


@dataclass(frozen=True)
class ScoredSplit:
    """What evaluate keeps of every test row, in the split's row order: O(rows) arrays, never the
    rows' features."""

    row_id: np.ndarray
    labels: dict[str, np.ndarray]                   # task -> float64 label (NaN: not labelled)
    users: np.ndarray | None                        # the spec user key; None when the split has no such column
    scores: dict[str, np.ndarray]                   # served output -> float64 score (score_frame)
    head_scores: dict[str, dict[str, np.ndarray]]   # head -> task -> float64 score (score_heads)


def score_split(split_dir: Path, spec: DatasetSpec, model: MultiTaskModel, encoders: Encoders,
                heads: list[str]) -> ScoredSplit:
    """Stream the split in BATCH_ROWS batches: check each batch's labels, score it, keep the row
    ids, labels, users and scores. The scores are bit for bit those of scoring the whole split at
    once (StreamScorer). A row group that cannot be read fails naming its file and index
    (core.splits.SplitReadError)."""
    row_ids: list[np.ndarray] = []
    users: list[np.ndarray] | None = None
    labels: dict[str, list[np.ndarray]] = {t: [] for t in spec.task_names}
    scorer = StreamScorer(model, encoders, heads)
    for batch in splits.iter_batches(split_dir, batch_rows=BATCH_ROWS):
        missing = [t for t in spec.task_names if t not in batch.columns]
        if missing:
            raise ValueError(f"{split_dir}: label columns {missing} are missing")
        has_users = spec.user_key in batch.columns
        if not row_ids:
            users = [] if has_users else None
        elif has_users != (users is not None):
            # gAUC over only some of the rows would be a different metric: the files must agree
            raise ValueError(f"{split_dir}: the user column {spec.user_key!r} is in some files of the test "
                             "split and not in others")
        row_ids.append(batch[ROW_ID].to_numpy())
        if users is not None:
            users.append(batch[spec.user_key].to_numpy())
        for task in spec.task_names:
            labels[task].append(batch[task].to_numpy(dtype=np.float64))
        scorer.add(batch)
    if sum(len(r) for r in row_ids) == 0:
        raise ValueError(f"{split_dir}: the test split has 0 rows; nothing to score on")
    scores, head_scores = scorer.finish()
    return ScoredSplit(row_id=np.concatenate(row_ids),
                       labels={t: np.concatenate(v) for t, v in labels.items()},
                       users=None if users is None else np.concatenate(users),
                       scores=scores, head_scores=head_scores)


def run(ctx: RunContext) -> EvaluateResult:
    """Score split('test') in streaming batches; write predictions.parquet and metrics.json (computed
    over every test row at once, so exact); say what they hold."""
    run_files, spec, params = ctx.run_files, ctx.spec, ctx.params
    test_dir = Path(run_files.split("test"))
    if not splits.split_files(test_dir):
        raise FileNotFoundError(f"test split not found: no day partitions under {test_dir} (run make_dataset first)")
    encoders = Encoders.load(run_files.encoders)
    # The hash of the weights these predictions came from: the gate refuses to judge a model.pt
    # that a later train replaced (core.blessing).
    model_sha256 = sha256_file(run_files.checkpoint)
    model = load_trained(run_files, device=pick_device(params.train.device))
    if [n for n, _ in model.tasks] != list(spec.task_names):
        raise ValueError(f"{run_files.model_config}: model tasks {[n for n, _ in model.tasks]} differ from "
                         f"the {spec.name} spec tasks {list(spec.task_names)}")
    heads = list(getattr(model.transfer, "evaluated_heads", ()))
    test = score_split(test_dir, spec, model, encoders, heads)
    scores = test.scores

    preds = pd.DataFrame({ROW_ID: test.row_id})
    for name in spec.task_names:
        preds[name] = test.labels[name]
    for name in spec.task_names:
        preds[f"score_{name}"] = scores[name]
    with atomic_path(run_files.predictions) as tmp:
        preds.to_parquet(tmp, index=False)

    users = test.users
    result: dict = {"n_test": int(len(test.row_id)), "model_sha256": model_sha256,
                    "tasks": {t.name: task_metrics(t.type, preds[t.name].to_numpy(), scores[t.name],
                                                   users if t.is_binary else None) for t in spec.tasks}}
    pairs = multi_auc_pairs(spec, model)
    for task, partner in pairs:
        result["tasks"][task].setdefault("multi_auc", {})[partner] = multi_auc_of(
            preds[task].to_numpy(), preds[partner].to_numpy(), scores[task])
    if heads:
        kinds = {t.name: t.type for t in spec.tasks}
        result["heads"] = {}
        for head, head_scores in test.head_scores.items():
            result["heads"][head] = {task: task_metrics(kinds[task], preds[task].to_numpy(), score)
                                     for task, score in head_scores.items()}
            for task, partner in pairs:
                if task in head_scores:
                    result["heads"][head][task].setdefault("multi_auc", {})[partner] = multi_auc_of(
                        preds[task].to_numpy(), preds[partner].to_numpy(), head_scores[task])
    consistency = consistency_metrics(spec, preds, scores)
    if consistency is not None:
        result["consistency"] = consistency
    write_json(run_files.metrics, result)
    return EvaluateResult(n_test=result["n_test"], metrics=run_files.metrics, predictions=run_files.predictions,
                          auc={t: m.get("auc") for t, m in result["tasks"].items() if "auc" in m},
                          rmse={t: m.get("rmse") for t, m in result["tasks"].items() if "rmse" in m})
