"""Helpers shared by the test suites: fixtures' building blocks, oracles and sample data.

Test modules import from here, never from a `conftest.py`.
"""
