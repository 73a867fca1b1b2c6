"""Thin command-line interface over the public API."""
