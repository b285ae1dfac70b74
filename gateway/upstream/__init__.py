"""Upstream backends: where the gateway sends a request (teacher providers, student engines)."""
