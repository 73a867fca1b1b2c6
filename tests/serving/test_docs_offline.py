"""`keel serve`'s /docs works offline: Swagger UI comes from the package.

It renders with the network off.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from keel.serving.app import create_app
from keel.serving.docs import mount_local_docs
from keel.serving.served import ServedModel

from browsers import chromium
from factories import small_engine

# The least size of each kind of asset: Swagger UI's script is over a megabyte, its stylesheet
# about 190 kB.
KINDS = {"text/javascript": 500_000, "text/css": 50_000, "image/png": 100}


@pytest.fixture(scope="module")
def engine() -> ServedModel:
    return small_engine()


@pytest.fixture(scope="module")
def client(engine: ServedModel) -> TestClient:
    return TestClient(create_app(engine, api_key="s3cret"))


class Assets(HTMLParser):
    """Every URL the page loads as a script, stylesheet, icon, image, font or frame."""

    LOADING = {
        ("script", "src"),
        ("link", "href"),
        ("img", "src"),
        ("img", "srcset"),
        ("source", "src"),
        ("source", "srcset"),
        ("iframe", "src"),
        ("embed", "src"),
        ("object", "data"),
        ("video", "poster"),
        ("audio", "src"),
        ("video", "src"),
        ("input", "src"),
    }

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline: list[str] = []  # inline <style> and style="" text, for url(...) and @import
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value and (tag, name) in self.LOADING:
                self.urls += (
                    [part.split()[0] for part in value.split(",") if part.strip()]
                    if name == "srcset"
                    else [value]
                )
            if name == "style" and value:
                self.inline.append(value)
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.inline.append(data)


def _css_urls(css: str) -> list[str]:
    """The targets of a stylesheet's url(...) and @import, data: URIs left out."""
    found = re.findall(r"url\(\s*['\"]?([^'\")]+)", css) + re.findall(
        r"@import\s+['\"]([^'\"]+)", css
    )
    return [url for url in found if not url.strip().lower().startswith("data:")]


def _external(url: str) -> bool:
    """Whether the browser would fetch ``url`` from another host (absolute or scheme-relative)."""
    return url.strip().startswith("//") or urlsplit(url.strip()).scheme not in ("", "data")


def test_docs_reference_only_assets_the_app_serves_itself(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    parsed = Assets()
    parsed.feed(page.text)
    assets = parsed.urls + [u for text in parsed.inline for u in _css_urls(text)]
    assert not [url for url in assets if _external(url)], assets
    assert not re.search(r"https?://|cdn\.", page.text), "the docs page names an outside address"
    assert {Path(urlsplit(url).path).name for url in assets} >= {
        "swagger-ui-bundle.js",
        "swagger-ui.css",
    }

    for url in assets:
        answer = client.get(urljoin("http://testserver/docs", url))
        assert answer.status_code == 200, url
        kind = answer.headers["content-type"].split(";")[0]
        assert kind in KINDS and len(answer.content) >= KINDS[kind], (
            url,
            kind,
            len(answer.content),
        )
        if kind == "text/css":  # the stylesheet's own fonts and images are inline or local too
            assert not [u for u in _css_urls(answer.text) if _external(u)], url
        if kind == "image/png":
            assert answer.content.startswith(b"\x89PNG\r\n\x1a\n"), url
    assert "SwaggerUIBundle" in client.get("/static/swagger-ui/swagger-ui-bundle.js").text


def test_docs_keep_the_schema_and_oauth_redirect_and_redoc_is_off(client: TestClient) -> None:
    assert client.get("/openapi.json").json()["paths"].keys() >= {"/v1/score", "/v1/score/batch"}
    assert client.get("/docs/oauth2-redirect").status_code == 200
    assert "http" not in client.get("/docs/oauth2-redirect").text.replace("window.location", "")
    assert (
        client.get("/redoc").status_code == 404
    )  # ReDoc's page would load fonts from outside: not offered
    assert client.get("/static/swagger-ui/").status_code == 404  # no listing
    assert (
        client.get("/static/swagger-ui/LICENSE").status_code == 200
    )  # Swagger UI's license ships beside it


def test_local_docs_follow_the_root_path_and_refuse_an_app_with_cdn_docs() -> None:
    app = FastAPI(title="Other service", docs_url=None, redoc_url=None)
    mount_local_docs(app, title="Other service docs")
    page = TestClient(app, root_path="/behind/proxy").get("/docs").text
    assert '"/behind/proxy/static/swagger-ui/swagger-ui-bundle.js"' in page
    assert "'/behind/proxy/openapi.json'" in page and "<title>Other service docs</title>" in page
    with pytest.raises(ValueError, match="docs_url=None"):
        mount_local_docs(FastAPI(), title="x")
    with pytest.raises(ValueError, match="openapi_url"):
        mount_local_docs(FastAPI(docs_url=None, redoc_url=None, openapi_url=None), title="x")


@pytest.fixture
def served(engine: ServedModel) -> Iterator[str]:
    """The scoring app in uvicorn on a free loopback port, in a thread; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(engine), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def test_docs_render_the_operations_in_a_browser_with_the_network_off(
    served: str, tmp_path: Path
) -> None:
    binary = chromium()
    from playwright.sync_api import Route, sync_playwright
    from playwright.sync_api import TimeoutError as Timeout

    local = urlsplit(served).netloc
    outside: list[str] = []
    failed: list[str] = []
    errors: list[str] = []

    def only_local(route: Route) -> None:
        if urlsplit(route.request.url).netloc == local:
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort("internetdisconnected")

    with sync_playwright() as p:
        # A proxy that answers nothing stands for a network that is off (Chromium never proxies
        # loopback), and page.route below refuses and records whatever the page asks of another
        # host.
        browser = p.chromium.launch(
            executable_path=binary,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--disable-sync",
                "--proxy-server=http://127.0.0.1:9",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.set_default_timeout(30_000)
            page.route("**/*", only_local)
            page.on("requestfailed", lambda r: failed.append(r.url))
            page.on(
                "response",
                lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None,
            )
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(f"{served}/docs", wait_until="load")
            score = page.locator(".opblock-summary-path[data-path='/v1/score']")
            try:
                page.wait_for_selector(".opblock")
                score.wait_for()
            except Timeout:
                pytest.fail(
                    f"/docs showed no operations; outside requests {outside}, failed {failed}, "
                    f"errors {errors}",
                    pytrace=False,
                )
            assert score.count() == 1
            assert page.locator(".opblock").count() >= 5  # score, batch, probes, metrics, admin
            assert "Keel scoring: loans" in page.locator(".info .title").inner_text()
            page.wait_for_load_state("networkidle")
            shot = tmp_path / "docs.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()

    assert outside == [], f"the docs page asked for outside addresses: {outside}"
    assert failed == [] and errors == [], (failed, errors)
    assert shot.stat().st_size > 20_000, "the screenshot is nearly empty"
    from PIL import Image

    with Image.open(shot) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 50, (
        "the screenshot is (almost) one colour: the page is blank"
    )
