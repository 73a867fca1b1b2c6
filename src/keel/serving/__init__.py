"""Scoring: one engine for the real-time API and for batch files, so both give the same answers."""
