"""Ed25519 keys that sign the audit log, and signed checkpoints of its head kept elsewhere.

An :class:`AuditKey` lives in a PEM file readable by its owner only. A :class:`CheckpointStore`
is a second location (a folder, or any fsspec URL such as ``s3://bucket/keel``) that the
database's users cannot rewrite: each checkpoint is a new file, created exclusively and never
overwritten, holding the head (row count and newest hash) signed by the key in force. Give the
store write-once permissions (an S3 bucket with object lock, a folder only the service may write)
so that an insider with database access cannot touch it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import stat
import tempfile
from contextlib import suppress
from dataclasses import asdict, dataclass
from pathlib import Path

import fsspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from fsspec.implementations.local import LocalFileSystem

from keel.errors import IntegrityError
from keel.io.stores import is_object_store, storage_errors, with_hint

CHECKPOINT_FIELDS = ("seq", "hash", "time", "key_id", "public_key", "signature")


def key_id_of(public_key_hex: str) -> str:
    """The short name of a public key: the first 16 hex characters of sha256 of its raw 32 bytes."""
    return hashlib.sha256(bytes.fromhex(public_key_hex)).hexdigest()[:16]


def verify_signature(public_key_hex: str, message: bytes, signature_hex: str) -> bool:
    """True when ``signature_hex`` is the Ed25519 signature of ``message`` by ``public_key_hex``."""
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key_hex)).verify(
            bytes.fromhex(signature_hex), message
        )
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


class AuditKey:
    """An Ed25519 private key that signs audit rows, heads and checkpoints."""

    def __init__(self, private_key: Ed25519PrivateKey, path: Path | None = None) -> None:
        self._private = private_key
        self.path = path
        raw = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.public_key_hex = raw.hex()
        self.key_id = key_id_of(self.public_key_hex)

    @classmethod
    def generate(cls) -> AuditKey:
        """A fresh key held in memory only (save it with :meth:`load_or_create` for real use)."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def load_or_create(cls, path: str | os.PathLike[str]) -> AuditKey:
        """The key in ``path`` (PEM, PKCS#8); created there, mode 0600, when the file is missing."""
        path = Path(path)
        if not path.exists():
            _create_key_file(path)
        mode = stat.S_IMODE(path.stat().st_mode)
        if os.name == "posix" and mode & 0o077:
            raise IntegrityError(
                f"audit key file {path} has mode {mode:04o}, but it must be readable by its owner "
                f"only (mode 0600): run `chmod 600 {path}`, and rotate the key if others read it"
            )
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (ValueError, TypeError) as error:
            raise IntegrityError(
                f"audit key file {path} is not an unencrypted PEM private key: {error}"
            ) from error
        if not isinstance(key, Ed25519PrivateKey):
            raise IntegrityError(
                f"audit key file {path} holds a {type(key).__name__}; audit keys are Ed25519"
            )
        return cls(key, path)

    def sign(self, message: bytes) -> str:
        """The Ed25519 signature of ``message``, as hex."""
        return self._private.sign(message).hex()

    def __repr__(self) -> str:
        return f"AuditKey(key_id={self.key_id!r}, path={str(self.path) if self.path else None!r})"


def _create_key_file(path: Path) -> None:
    """Write a new key to ``path`` atomically with mode 0600.

    A key another process wrote first wins.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with suppress(FileExistsError):
        _create_local(path, pem, mode=0o600)  # never replaces a key that exists


def _checkpoint_message(seq: int, head_hash: str, time: str) -> bytes:
    return f"keel-audit-checkpoint:{seq}:{head_hash}:{time}".encode()


@dataclass(frozen=True)
class Checkpoint:
    """The audit head at one moment: ``seq`` rows ending in ``hash``, signed by ``key_id``."""

    seq: int
    hash: str
    time: str
    key_id: str
    public_key: str
    signature: str

    @classmethod
    def sign(cls, seq: int, head_hash: str, key: AuditKey) -> Checkpoint:
        """A checkpoint of (seq, head_hash) signed now by ``key``."""
        time = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
        return cls(
            seq,
            head_hash,
            time,
            key.key_id,
            key.public_key_hex,
            key.sign(_checkpoint_message(seq, head_hash, time)),
        )

    @property
    def name(self) -> str:
        """Its file name: names sort by seq."""
        return f"{self.seq:012d}-{self.hash[:12]}.json"

    def is_valid(self) -> bool:
        """True when its key id names its public key and its signature covers (seq, hash, time)."""
        try:
            named = key_id_of(self.public_key) == self.key_id
        except ValueError:
            return False
        return named and verify_signature(
            self.public_key, _checkpoint_message(self.seq, self.hash, self.time), self.signature
        )


@dataclass(frozen=True)
class CheckpointScan:
    """What a checkpoint location holds: the readable checkpoints (sorted) and malformed files."""

    checkpoints: list[Checkpoint]
    malformed: list[tuple[str, str]]  # (file name, what is wrong)


class CheckpointStoreError(IntegrityError, OSError):
    """The checkpoint location cannot be read or written (a folder, a bucket, its endpoint)."""


class CheckpointStore:
    """An append-only folder of checkpoint files at a local path or fsspec URL.

    On an object store (``s3://bucket/prefix``) each checkpoint is one conditional PUT
    (If-None-Match), so it appears whole and never replaces another; the endpoint and
    credentials come from the environment (see :mod:`keel.io.stores`).
    """

    def __init__(self, location: str | os.PathLike[str]) -> None:
        self.location = str(location)
        self.fs, self.root = fsspec.core.url_to_fs(self.location)
        self.root = self.root.rstrip("/")

    def write(self, checkpoint: Checkpoint) -> bool:
        """Add ``checkpoint`` as a new file; False when a file of that name exists already.

        An existing file is never overwritten.
        """
        body = json.dumps(asdict(checkpoint), sort_keys=True).encode()
        path = f"{self.root}/{checkpoint.name}"
        try:
            if isinstance(self.fs, LocalFileSystem):
                self.fs.makedirs(self.root, exist_ok=True)
                _create_local(Path(path), body)
            else:  # an object store has no folders; its put-if-absent is one atomic request
                if not is_object_store(self.fs):
                    self.fs.makedirs(self.root, exist_ok=True)
                with self.fs.open(path, "xb") as handle:
                    handle.write(body)
        except FileExistsError:
            return False
        except storage_errors() as error:
            raise CheckpointStoreError(
                with_hint(
                    f"cannot write the audit checkpoint {checkpoint.name} to {self.location}: "
                    f"{error}",
                    self.location,
                )
            ) from error
        return True

    def scan(self) -> CheckpointScan:
        """Every checkpoint, sorted by seq, and every file that is not a well-formed checkpoint."""
        found: list[Checkpoint] = []
        malformed: list[tuple[str, str]] = []
        for path in self._paths():
            name = path.rsplit("/", 1)[-1]
            try:
                found.append(_parse(name, self.fs.cat_file(path)))
            except (ValueError, OSError) as error:
                malformed.append((name, str(error)))
        return CheckpointScan(sorted(found, key=lambda c: (c.seq, c.name)), malformed)

    def all(self) -> list[Checkpoint]:
        """Every well-formed checkpoint, sorted by seq (see :meth:`scan` for the malformed ones)."""
        return self.scan().checkpoints

    def newest(self) -> Checkpoint | None:
        """The well-formed checkpoint with the highest seq, or None when there is none.

        Reads one file or a few.
        """
        for path in reversed(self._paths()):
            try:
                return _parse(path.rsplit("/", 1)[-1], self.fs.cat_file(path))
            except (ValueError, OSError):
                continue
        return None

    def _paths(self) -> list[str]:
        """The checkpoint files, sorted by name (so by seq); temporary files are left out."""
        self.fs.invalidate_cache(self.root)  # another process may have added one since
        try:
            if not self.fs.exists(self.root):
                return []
            paths = [p.rstrip("/") for p in self.fs.ls(self.root, detail=False)]
        except storage_errors() as error:
            message = f"cannot list the audit checkpoints in {self.location}: {error}"
            raise CheckpointStoreError(with_hint(message, self.location)) from error
        return sorted(p for p in paths if not p.rsplit("/", 1)[-1].startswith("."))

    def __repr__(self) -> str:
        return f"CheckpointStore({self.location!r})"


def _create_local(path: Path, body: bytes, *, mode: int = 0o644) -> None:
    """Write ``body`` to a temporary file, then link it to ``path``.

    Atomic, and FileExistsError if ``path`` exists.
    """
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mode 0600 until chmod
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode)
        os.link(temp, path)
    finally:
        os.unlink(temp)


def _parse(name: str, body: bytes) -> Checkpoint:
    """The checkpoint a file holds; ValueError saying what is wrong when it is not one."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"not JSON ({error})") from error
    if not isinstance(data, dict) or sorted(data) != sorted(CHECKPOINT_FIELDS):
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"expected the fields {list(CHECKPOINT_FIELDS)}, found {keys}")
    if not isinstance(data["seq"], int) or isinstance(data["seq"], bool) or data["seq"] < 1:
        raise ValueError(f"seq must be a positive integer, found {data['seq']!r}")
    if not all(isinstance(data[k], str) for k in CHECKPOINT_FIELDS[1:]):
        raise ValueError("hash, time, key_id, public_key and signature must be strings")
    checkpoint = Checkpoint(**data)
    if checkpoint.name != name:
        raise ValueError(
            f"the file is named {name}, but it holds row {checkpoint.seq} with hash "
            f"{checkpoint.hash[:12]}... (expected the name {checkpoint.name})"
        )
    return checkpoint
