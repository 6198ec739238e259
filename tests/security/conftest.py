"""Fixtures of the security tests: ``team`` (members of each role; see ``team.py``)."""

from tests.security.team import team

__all__ = ["team"]
