"""Explanations: exact TreeSHAP contributions, reason codes and global importance."""
