"""A spec's data.source cannot reach the network, a device or unbounded memory (issue 15, finding 4)."""

from __future__ import annotations

from pathlib import Path

import pytest

from keel.errors import DataError
from keel.io.tables import read_table


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/data.csv", "https://169.254.169.254/latest/meta-data",
                                 "ftp://example.com/x.csv", "github://org:repo@main/x.csv"])
def test_schemes_the_operator_did_not_allow_are_refused_before_any_request(url: str,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KEEL_DATA_SCHEMES", raising=False)
    with pytest.raises(DataError, match=r"is not allowed here; allowed: file, s3"):
        read_table(url, "csv")


def test_a_device_is_refused_not_read_into_memory() -> None:
    with pytest.raises(DataError, match="not a regular file"):
        read_table("/dev/zero", "csv")


def test_a_source_over_the_size_limit_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    big = tmp_path / "big.csv"
    big.write_text("a,b\n" + "1,2\n" * 10_000)
    monkeypatch.setenv("KEEL_MAX_SOURCE_BYTES", "1000")
    with pytest.raises(DataError, match=r"larger than 1,000 bytes \(KEEL_MAX_SOURCE_BYTES\)"):
        read_table(str(big), "csv")


def test_the_operator_can_allow_http(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEL_DATA_SCHEMES", "file,https")
    with pytest.raises(DataError, match="cannot read data source|does not exist"):  # allowed, then unreachable
        read_table("https://127.0.0.1:9/data.csv", "csv")
