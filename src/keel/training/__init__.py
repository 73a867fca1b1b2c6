"""Splits, preprocessing, model families and tuning."""
