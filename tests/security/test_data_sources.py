"""A spec's data.source cannot reach the network, a device or unbounded memory.

Issue 15, finding 4.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from keel.errors import DataError
from keel.io.tables import read_table


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/data.csv",
        "https://169.254.169.254/latest/meta-data",
        "ftp://example.com/x.csv",
        "github://org:repo@main/x.csv",
    ],
)
def test_schemes_the_operator_did_not_allow_are_refused_before_any_request(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KEEL_DATA_SCHEMES", raising=False)
    with pytest.raises(DataError, match=r"is not allowed here; allowed: file, s3"):
        read_table(url, "csv")


def test_a_device_is_refused_not_read_into_memory() -> None:
    with pytest.raises(DataError, match="not a regular file"):
        read_table("/dev/zero", "csv")


def test_a_source_over_the_size_limit_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = tmp_path / "big.csv"
    big.write_text("a,b\n" + "1,2\n" * 10_000)
    monkeypatch.setenv("KEEL_MAX_SOURCE_BYTES", "1000")
    with pytest.raises(DataError, match=r"larger than 1,000 bytes \(KEEL_MAX_SOURCE_BYTES\)"):
        read_table(str(big), "csv")


def test_the_operator_can_allow_http(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEL_DATA_SCHEMES", "file,https")
    with pytest.raises(
        DataError, match="cannot read data source|does not exist"
    ):  # allowed, then unreachable
        read_table("https://127.0.0.1:9/data.csv", "csv")


def test_an_allowed_http_source_is_read_but_its_redirects_are_not_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/data.csv":
                body = b"a,b\n1,2\n3,4\n"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            else:  # to another host, e.g. a cloud metadata address
                self.send_response(302)
                self.send_header("Location", "http://169.254.169.254/latest/meta-data")
                self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("KEEL_DATA_SCHEMES", "file,http")
    try:
        assert read_table(f"{base}/data.csv", "csv").frame.shape == (2, 2)
        with pytest.raises(
            DataError,
            match=r"answered 302 pointing to http://169.254.169.254/latest/meta-data; "
            "redirects are not followed",
        ):
            read_table(f"{base}/moved.csv", "csv")
    finally:
        server.shutdown()
