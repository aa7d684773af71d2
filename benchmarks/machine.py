"""Describe the machine a benchmark ran on (recorded beside every figure)."""
from __future__ import annotations

import datetime as dt
import os
import platform


def describe() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(next(line for line in open("/proc/meminfo") if line.startswith("MemTotal")).split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, StopIteration):
        pass
    gpu = ""
    try:
        import torch

        if torch.cuda.is_available():
            gpu = f", GPU {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return f"{os.cpu_count()} cores ({cpu}){mem}{gpu}, Python {platform.python_version()}"


def today() -> str:
    return dt.date.today().isoformat()  # when the benchmark ran: metadata, not data logic
