"""Test support: helpers and fixtures shared by the suite (registered from tests/conftest.py)."""
