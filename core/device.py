"""Device choice: one rule for train, evaluate and export."""
from __future__ import annotations

import torch


def pick_device(name: str = "auto") -> torch.device:
    """"auto" -> cuda when available, else cpu; "cpu"/"cuda"/"cuda:N" as asked (cuda must exist)."""
    name = (name or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available on this machine")
    return device
