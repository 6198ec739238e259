"""Moved to :mod:`profilesync.demo.postgres`; this import path stays for one release."""

from profilesync.demo.postgres import build_warehouse, run_demo

__all__ = ["build_warehouse", "run_demo"]
