"""Flows that compose the stages: run, train, evaluate."""
