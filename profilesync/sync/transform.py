"""Moved to :mod:`profilesync.engine.transform`; kept for one release."""

from profilesync.engine.transform import (
    DELETED,
    MIN_USER_ID_LENGTH,
    REJECTED_SAMPLE,
    Transformed,
    transform,
)

__all__ = ["DELETED", "MIN_USER_ID_LENGTH", "REJECTED_SAMPLE", "Transformed", "transform"]
