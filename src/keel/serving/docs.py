"""Swagger UI at ``/docs`` from assets shipped in the package: no CDN, so the docs work offline.

FastAPI's own ``/docs`` page loads Swagger UI's script and stylesheet from a CDN, and is blank on
a machine that cannot reach it. :func:`mount_local_docs` serves the same page with the files of
``swagger-ui-dist`` kept in ``keel/static/swagger-ui`` (see ``SOURCE.md`` there). ReDoc is not
offered: FastAPI's ReDoc page also loads web fonts from outside, and Swagger UI covers the need.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.requests import Request

SWAGGER_UI_DIR = Path(__file__).resolve().parent.parent / "static" / "swagger-ui"
ASSETS_URL = "/static/swagger-ui"


def mount_local_docs(
    app: FastAPI, *, title: str, docs_url: str = "/docs", assets_url: str = ASSETS_URL
) -> None:
    """Serve Swagger UI for ``app``'s OpenAPI schema at ``docs_url``, assets under ``assets_url``.

    ``app`` must be made with ``docs_url=None, redoc_url=None`` (else FastAPI has already added
    its CDN pages) and with an ``openapi_url``. Its ``swagger_ui_oauth2_redirect_url`` (by default
    ``/docs/oauth2-redirect``), ``swagger_ui_init_oauth`` and ``swagger_ui_parameters`` are honoured
    as FastAPI would; the online validator badge is off. Links carry the request's ``root_path``,
    so the page also works behind a proxy that strips a prefix.
    """
    if app.docs_url or app.redoc_url:
        raise ValueError(
            "make the app with FastAPI(..., docs_url=None, redoc_url=None): "
            "FastAPI's own docs pages load their assets from a CDN"
        )
    if not app.openapi_url:
        raise ValueError("the app has no openapi_url: there is no schema for the docs to show")
    if not (SWAGGER_UI_DIR / "swagger-ui-bundle.js").is_file():
        raise RuntimeError(
            f"Swagger UI's files are missing from {SWAGGER_UI_DIR}: the package is incomplete"
        )
    openapi_url, redirect_url = app.openapi_url, app.swagger_ui_oauth2_redirect_url
    parameters = {"validatorUrl": None, **(app.swagger_ui_parameters or {})}

    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=title,
            swagger_js_url=f"{root}{assets_url}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{assets_url}/swagger-ui.css",
            swagger_favicon_url=f"{root}{assets_url}/favicon-32x32.png",
            oauth2_redirect_url=root + redirect_url if redirect_url else None,
            init_oauth=app.swagger_ui_init_oauth,
            swagger_ui_parameters=parameters,
        )

    app.add_route(docs_url, swagger_ui, include_in_schema=False)
    if redirect_url:

        async def oauth2_redirect(_: Request) -> HTMLResponse:
            return get_swagger_ui_oauth2_redirect_html()

        app.add_route(redirect_url, oauth2_redirect, include_in_schema=False)
    app.mount(assets_url, StaticFiles(directory=SWAGGER_UI_DIR), name="swagger-ui-assets")
