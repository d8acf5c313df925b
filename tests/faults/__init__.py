"""The fault suite (issue 12): real faults under continuous load, histories checked at the end.

Run with `make faults` (or `pytest -m fault`); `make test` skips the scenarios.
"""
