"""Seconds since this process started, for the benchmark's start-up figures (no imports beyond the stdlib,
so timing an import does not time this module's own)."""

from __future__ import annotations

import os
from pathlib import Path


def process_age_s() -> float:
    """Seconds since this process started, from /proc (Linux)."""
    ticks = os.sysconf("SC_CLK_TCK")
    start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return uptime - start_ticks / ticks
