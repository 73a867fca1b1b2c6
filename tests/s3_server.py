"""A local S3-compatible server for tests: moto's server mode on a free loopback port.

Keel reads the store's settings from the standard AWS variables only, so a test points every
part (s3fs, boto3, MLflow) at this server through :meth:`MotoS3.environment`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from postgres_server import free_port


@dataclass
class MotoS3:
    """One running moto server; ``endpoint`` is its http URL on 127.0.0.1."""

    server: Any
    port: int

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def start(cls) -> MotoS3:
        """Start the server in a thread (its request log silenced) and wait until it listens."""
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        port = free_port()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()  # returns once the server is bound
        return cls(server, port)

    def environment(self) -> dict[str, str]:
        """The variables that point s3fs, boto3 and MLflow at this server, with dummy keys."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def client(self) -> Any:
        """A boto3 S3 client of this server (to make buckets and list keys)."""
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, **_keys())

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every key in ``bucket`` under ``prefix``, sorted."""
        pages = (
            self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        )
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    def stop(self) -> None:
        """Stop the server (its in-memory buckets go with it)."""
        self.server.stop()


def _keys() -> dict[str, str]:
    return {
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
        "region_name": "us-east-1",
    }


def forget_connections() -> None:
    """Drop s3fs's cached filesystems, so the next one reads the environment afresh."""
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
