"""Pickle-free model families, their preprocessing, and the model artifact format."""
