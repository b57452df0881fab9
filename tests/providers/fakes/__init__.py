"""Spec-faithful fake upstream servers for provider adapter tests (one module per vendor)."""
