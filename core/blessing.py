"""blessing.json as a type: the gate's decision, written by the gate and read by export, promote,
the report and the run summary through this module only (never as a raw dict).

A Blessing names the bytes it judged: `model_sha256` is the sha256 (lowercase hex,
core.registry.sha256_file) of the run's model.pt when the gate decided, `predictions_sha256`
the one of the predictions.parquet whose scores it checked. A blessing authorises those bytes
and no others: `Blessing.refusal(model_path)` says why a model.pt may not ship under it (not
blessed, the record predates model hashing, model.pt missing, or model.pt differs from the
blessed bytes, with both hashes), or None when it may.

On disk (JSON, keys sorted):
    blessed             bool
    reason              str, one line
    checks              [{name, task, value, threshold, passed, detail, interval}]
    champion            the champion record compared against (+ its AUCs, eCPM), or null
    challenger          {run_dir, run_date, metrics, ecpm}
    model_sha256        sha256 of model.pt the gate judged, or null (no model.pt; older record:
                        key absent)
    predictions_sha256  sha256 of predictions.parquet the gate judged, or null / absent
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from core.atomic import read_json, write_json

SHA256 = re.compile(r"[0-9a-f]{64}")


class BlessingError(ValueError):
    """blessing.json is not a blessing record (bad JSON, wrong types, a malformed hash)."""


@dataclass(frozen=True)
class Check:
    name: str                 # "auc_floor" | "calibration" | "auc_drop" | "ecpm_uplift" | "champion"
    task: str | None
    value: float | None       # floor: AUC; calibration: ratio; drop: champion - challenger AUC; uplift: point
    threshold: float | list | None
    passed: bool
    detail: str
    interval: list | None = None  # ecpm_uplift: [lower, upper] at the configured confidence

    @classmethod
    def from_json(cls, d: Any) -> "Check":
        if not isinstance(d, dict):
            raise BlessingError(f"a check is a JSON object, got {type(d).__name__}")
        name, passed = d.get("name"), d.get("passed")
        if not isinstance(name, str) or not isinstance(passed, bool):
            raise BlessingError(f"a check needs a string name and a boolean passed, got {d!r}")
        return cls(name, d.get("task"), d.get("value"), d.get("threshold"), passed, str(d.get("detail") or ""),
                   d.get("interval"))


@dataclass(frozen=True)
class Blessing:
    blessed: bool
    reason: str
    checks: tuple[Check, ...]
    champion: dict | None     # the champion record compared against (+ its AUCs, eCPM), None if none
    challenger: dict          # run_dir, run_date, metrics, ecpm
    model_sha256: str | None = None        # model.pt the gate judged (None: none there, or an older record)
    predictions_sha256: str | None = None  # predictions.parquet the gate judged

    def __post_init__(self):
        for key in ("model_sha256", "predictions_sha256"):
            v = getattr(self, key)
            if v is not None and not (isinstance(v, str) and SHA256.fullmatch(v)):
                raise BlessingError(f"{key} must be 64 lowercase hex digits or null, got {v!r}")

    # ------------------------------------------------------------------ JSON and files

    def to_json(self) -> dict:
        return {**asdict(self), "checks": [asdict(c) for c in self.checks]}

    @classmethod
    def from_json(cls, d: Any) -> "Blessing":
        if not isinstance(d, dict):
            raise BlessingError(f"a blessing record is a JSON object, got {type(d).__name__}")
        blessed = d.get("blessed")
        if not isinstance(blessed, bool):
            raise BlessingError(f"'blessed' must be true or false, got {blessed!r}")
        checks, champion, challenger = d.get("checks"), d.get("champion"), d.get("challenger")
        checks, challenger = [] if checks is None else checks, {} if challenger is None else challenger
        if not isinstance(checks, list):
            raise BlessingError(f"'checks' must be a list, got {type(checks).__name__}")
        if champion is not None and not isinstance(champion, dict):
            raise BlessingError(f"'champion' must be an object or null, got {type(champion).__name__}")
        if not isinstance(challenger, dict):
            raise BlessingError(f"'challenger' must be an object, got {type(challenger).__name__}")
        return cls(blessed, str(d.get("reason") or "no reason recorded"), tuple(Check.from_json(c) for c in checks),
                   champion, challenger, d.get("model_sha256"), d.get("predictions_sha256"))

    def write(self, path: Path) -> Path:
        """Write atomically (a reader sees the previous record or this one, never a torn one)."""
        return write_json(path, self.to_json())

    @classmethod
    def read(cls, path: Path) -> "Blessing":
        """The record at path. FileNotFoundError when there is none; BlessingError (a ValueError)
        when it is not valid JSON or not a blessing record."""
        try:
            raw = read_json(path)
        except ValueError as exc:  # json.JSONDecodeError, UnicodeDecodeError
            raise BlessingError(f"{path} is not valid JSON: {exc}") from exc
        try:
            return cls.from_json(raw)
        except BlessingError as exc:
            raise BlessingError(f"{path}: {exc}") from exc

    # ------------------------------------------------------------------ what it authorises

    def refusal(self, model_path: Path) -> str | None:
        """Why the model at model_path may not be exported or promoted under this blessing, or
        None when the gate blessed exactly these bytes."""
        from core.registry import sha256_file

        if not self.blessed:
            return f"not blessed: {self.reason}"
        if self.model_sha256 is None:
            return ("blessing.json predates model hashing (it records no model_sha256), so it cannot say "
                    "which model.pt the gate judged: re-run the gate")
        model_path = Path(model_path)
        if not model_path.is_file():
            return (f"model.pt is missing: blessed model_sha256 {self.model_sha256}, current none "
                    f"({model_path}); re-run train, evaluate and the gate")
        current = sha256_file(model_path)
        if current != self.model_sha256:
            return (f"model.pt changed after the gate blessed it: blessed model_sha256 {self.model_sha256}, "
                    f"current {current} ({model_path}); re-run evaluate and the gate")
        return None
