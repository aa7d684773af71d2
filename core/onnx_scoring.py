"""Score raw rows with an exported model: encoders.json + model.onnx through onnxruntime (CPU).

This is the serving path without torch: the gate scores the champion with it, and anything
downstream can too. The model's own encoders.json encodes the rows, so a champion trained on a
different vocabulary still sees its own indices.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

INPUT_NAMES = ("categorical", "numeric")


def session(onnx_path: Path):
    """An onnxruntime CPU InferenceSession with warnings silenced (they flood task logs)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(onnx_path), sess_options=opts, providers=["CPUExecutionProvider"])


def run_session(sess, categorical: np.ndarray, numeric: np.ndarray) -> dict[str, np.ndarray]:
    """categorical int64 [B, Fc], numeric float32 [B, Fn] -> {output name: float32 [B]}."""
    outs = sess.run(None, {"categorical": np.ascontiguousarray(categorical, dtype=np.int64),
                           "numeric": np.ascontiguousarray(numeric, dtype=np.float32)})
    return {o.name: np.asarray(v).reshape(-1) for o, v in zip(sess.get_outputs(), outs)}


def score_with_onnx(onnx_path: Path, encoders_path: Path, df: pd.DataFrame,
                    batch_size: int = 65536) -> dict[str, np.ndarray]:
    """Encode `df` with encoders.json and score it: {task: float32 [N]} in the model's task order.

    Binary tasks come back as probabilities (the exported ServingModel applies the sigmoid).
    """
    from core.encoders import Encoders

    enc = Encoders.load(encoders_path)
    sess = session(onnx_path)
    names = [i.name for i in sess.get_inputs()]
    if sorted(names) != sorted(INPUT_NAMES):
        raise ValueError(f"{onnx_path}: inputs {names}, expected {list(INPUT_NAMES)}")
    cat, num = enc.transform(df)
    parts: dict[str, list[np.ndarray]] = {o.name: [] for o in sess.get_outputs()}
    for start in range(0, len(df), batch_size):
        for name, v in run_session(sess, cat[start:start + batch_size], num[start:start + batch_size]).items():
            parts[name].append(v)
    return {name: (np.concatenate(v) if v else np.zeros(0, np.float32)) for name, v in parts.items()}
