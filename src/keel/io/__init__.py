"""Reading and writing tables on any fsspec filesystem, and dataset hashing."""
