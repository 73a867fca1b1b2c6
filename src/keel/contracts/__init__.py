"""Data contracts built from the spec: validation and profiling."""
