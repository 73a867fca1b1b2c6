"""Where batch stages run: in this process, or on a Dask cluster chosen by configuration."""

from keel.engine.cluster import Engine, open_engine

__all__ = ["Engine", "open_engine"]
