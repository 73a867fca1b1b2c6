"""Feature preparation: explicit cleaning rules from the spec and feature selection."""
