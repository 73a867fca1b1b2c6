"""Object stores (``s3://`` and the like) as Keel uses them: their failures and their locations.

Keel passes no endpoint, region or credentials to a store: s3fs, boto3 and MLflow read the
standard AWS settings from the environment, so one set of variables points every part at the
same store (AWS_ENDPOINT_URL for an S3-compatible server such as MinIO, Ceph or moto;
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION; or an AWS profile or role).
"""

from __future__ import annotations

import sys
from typing import Any

from keel.errors import DataError

OBJECT_STORES = frozenset({"s3", "s3a", "gs", "gcs", "abfs", "abfss", "az"})
SETTINGS_HINT = (
    "check the bucket and path, and the store's settings in the environment (AWS_ENDPOINT_URL for "
    "an S3-compatible server, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION)"
)


def scheme_of(url: str) -> str:
    """The lower-case scheme of a URL; ``file`` for a plain path."""
    return url.split("://", 1)[0].lower() if "://" in url else "file"


def is_object_store(url_or_fs: str | Any) -> bool:
    """True for an object-store URL or filesystem (no folders; each object written whole)."""
    if isinstance(url_or_fs, str):
        return scheme_of(url_or_fs) in OBJECT_STORES
    protocols = url_or_fs.protocol
    return bool(OBJECT_STORES & set([protocols] if isinstance(protocols, str) else protocols))


def storage_errors(*more: type[BaseException]) -> tuple[type[BaseException], ...]:
    """What a filesystem or object store raises when it cannot read or write, and ``more``.

    OSError (what fsspec and s3fs translate most failures to), and botocore's own errors
    (an unreachable endpoint, bad credentials) when botocore is loaded. Call it in the
    ``except`` clause itself: that runs when an exception is matched, after the store's first
    request has loaded botocore.
    """
    found: list[type[BaseException]] = [OSError, *more]
    botocore = sys.modules.get("botocore.exceptions")
    if botocore is not None:
        found += [botocore.BotoCoreError, botocore.ClientError]
    return tuple(found)


def with_hint(message: str, url: str) -> str:
    """``message``, followed by the store settings to check when ``url`` is an object store."""
    return f"{message}; {SETTINGS_HINT}" if is_object_store(url) else message


def storage_failure(action: str, url: str, error: BaseException) -> DataError:
    """A DataError naming what could not be done to ``url`` and why, with the store hint."""
    return DataError(with_hint(f"cannot {action} '{url}': {error}", url))
