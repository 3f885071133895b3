"""The interactive API docs at `/docs`: Swagger UI served from this machine, never from a CDN.

Swagger UI's files come from the `swagger-ui-py` package, found where it is installed, so the
page works with no internet and the UI's version is the one the lock pins. The page is ours,
with no inline script: the start code is a static file that reads the document's URL from the
page, so the page's Content-Security-Policy can allow scripts from this origin only (see
app.http.security_headers).

Only the files the page loads are served, by name: nothing else of the package folder (the
editor bundles, their source maps, its sample start script) and no path built from the request.
Their URLs carry the package version and a digest of the start script, so the content behind
one URL never changes and browsers may keep it for a year. The asset route is the app's
`static` endpoint: the docs assets are the only static files the service has, and they are no
API operation. Every URL in the page comes from `url_for`, so a ROOT_PATH prefixes them all.
"""

from __future__ import annotations

import hashlib
import html
import importlib.metadata
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from quart import Quart, Response, request, send_file, url_for
from quart_schema import hide
from werkzeug.exceptions import NotFound

from app.http.security_headers import DOCS_CONTENT_SECURITY_POLICY

DOCS_PATH = "/docs"
PAGE_ENDPOINT = "swagger_ui"
"""The page's endpoint, the name quart-schema gives its own Swagger UI page."""
ASSET_ENDPOINT = "static"
SWAGGER_UI_DISTRIBUTION = "swagger-ui-py"
SWAGGER_UI_PACKAGE = "swagger_ui"
ASSET_MAX_AGE_SECONDS = 365 * 24 * 3600
ASSET_CACHE_CONTROL = f"public, max-age={ASSET_MAX_AGE_SECONDS}, immutable"
JAVASCRIPT = "text/javascript"
CSS = "text/css"
PNG = "image/png"
PACKAGE_ASSETS = {
    "swagger-ui.css": CSS,
    "index.css": CSS,
    "swagger-ui-bundle.js": JAVASCRIPT,
    "favicon-32x32.png": PNG,
    "favicon-16x16.png": PNG,
}
"""The package's files the page loads, with their MIME types (text ones are sent as UTF-8)."""
INITIALIZER = "swagger-initializer.js"
INITIALIZER_SOURCE = b"""\
"use strict";
// Starts Swagger UI on the page's #swagger-ui element. The page names the OpenAPI document's
// URL (ROOT_PATH included) in data-openapi-url and the ROOT_PATH in data-root-path, so this
// file is the same for every deployment. It runs at the end of the body, after that element.
const element = document.getElementById("swagger-ui");
const rootPath = element.dataset.rootPath;

// The document names no server, so "Try it out" would call each path from the origin's root;
// behind a proxy that serves the API under ROOT_PATH, the calls must carry it.
function underRootPath(request) {
  const url = new URL(request.url, window.location.href);
  const ours = url.origin === window.location.origin;
  if (rootPath && ours && !url.pathname.startsWith(rootPath + "/")) {
    url.pathname = rootPath + url.pathname;
    request.url = url.href;
  }
  return request;
}

window.ui = SwaggerUIBundle({
  url: element.dataset.openapiUrl,
  requestInterceptor: underRootPath,
  dom_id: "#swagger-ui",
  deepLinking: true,
  layout: "BaseLayout",
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  showExtensions: true,
  showCommonExtensions: true,
  validatorUrl: null // no badge image from validator.swagger.io
});
"""
"""Ours, not the package's `swagger-initializer.js` (which loads the Petstore sample)."""

PAGE_LINKS = (
    ("css", "swagger-ui.css"),
    ("index_css", "index.css"),
    ("icon_32", "favicon-32x32.png"),
    ("icon_16", "favicon-16x16.png"),
    ("bundle", "swagger-ui-bundle.js"),
    ("initializer", INITIALIZER),
)
"""The page's placeholders and the assets they name."""

PAGE = """\
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<link rel="stylesheet" href="{css}">
<link rel="stylesheet" href="{index_css}">
<link rel="icon" type="image/png" href="{icon_32}" sizes="32x32">
<link rel="icon" type="image/png" href="{icon_16}" sizes="16x16">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{openapi_url}" data-root-path="{root_path}"></div>
<script src="{bundle}"></script>
<script src="{initializer}"></script>
</body>
</html>
"""


@dataclass(frozen=True)
class SwaggerUI:
    """The installed Swagger UI files: where they are, and the version their URLs carry."""

    folder: Path
    version: str

    @classmethod
    def installed(cls) -> SwaggerUI:
        """Find the package without importing it (its import pulls in Jinja and YAML for its
        framework integrations, which this service does not use)."""
        spec = importlib.util.find_spec(SWAGGER_UI_PACKAGE)
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeError(f"{SWAGGER_UI_DISTRIBUTION} is not installed: /docs needs it")
        folder = Path(next(iter(spec.submodule_search_locations))) / "static"
        missing = sorted(name for name in PACKAGE_ASSETS if not (folder / name).is_file())
        if missing:
            raise RuntimeError(f"{SWAGGER_UI_DISTRIBUTION} has no {', '.join(missing)} in {folder}")
        return cls(folder, importlib.metadata.version(SWAGGER_UI_DISTRIBUTION))

    @property
    def asset_version(self) -> str:
        """What the asset URLs carry: changes whenever any asset's content may have."""
        digest = hashlib.sha256(INITIALIZER_SOURCE).hexdigest()[:12]
        return f"{self.version}-{digest}"


def register_docs_page(app: Quart, title: str, swagger_ui: SwaggerUI | None = None) -> None:
    """Serve the page at /docs and its assets under /docs/static/<asset version>/, both left
    out of the OpenAPI document. The app must have no static folder of its own."""
    swagger_ui = swagger_ui or SwaggerUI.installed()
    escaped_title = html.escape(title)

    @hide
    async def docs_page() -> Response:
        page = PAGE.format(
            title=escaped_title,
            openapi_url=_attribute(url_for("openapi")),
            root_path=_attribute(request.root_path),
            **{key: _attribute(url_for(ASSET_ENDPOINT, filename=name)) for key, name in PAGE_LINKS},
        )
        return Response(
            page,
            content_type="text/html; charset=utf-8",
            headers={"Content-Security-Policy": DOCS_CONTENT_SECURITY_POLICY},
        )

    @hide
    async def docs_asset(filename: str) -> Response:
        if filename == INITIALIZER:
            response = Response(INITIALIZER_SOURCE, mimetype=JAVASCRIPT)
        elif filename in PACKAGE_ASSETS:
            response = await send_file(
                swagger_ui.folder / filename, mimetype=PACKAGE_ASSETS[filename], conditional=True
            )
        else:
            raise NotFound()
        response.headers["Cache-Control"] = ASSET_CACHE_CONTROL
        return response

    app.add_url_rule(DOCS_PATH, PAGE_ENDPOINT, docs_page)
    app.add_url_rule(
        f"{DOCS_PATH}/static/{swagger_ui.asset_version}/<filename>", ASSET_ENDPOINT, docs_asset
    )


def _attribute(value: str) -> str:
    return html.escape(value, quote=True)
