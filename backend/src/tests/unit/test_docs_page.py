"""The docs page and its assets: only the files the page loads are served, each with its content
type and a long cache, from the installed swagger-ui-py; the page has no inline script and
every URL in it follows ROOT_PATH. The browser itself is in tests/live_db/test_docs_browser_live.py.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import re
from pathlib import Path

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as QuartClient

from app.http import docs_page
from app.http.docs_page import (
    ASSET_CACHE_CONTROL,
    INITIALIZER,
    INITIALIZER_SOURCE,
    SwaggerUI,
)
from tests.unit.assertions import assert_error

_LINKED = re.compile(r'(?:src|href)="([^"]+)"')
_SCRIPT = re.compile(r"<script\b([^>]*)>(.*?)</script>", re.DOTALL)
_BUNDLE_VERSION = re.compile(rb'PACKAGE_VERSION:"(\d+)\.(\d+)\.(\d+)"')
CONTENT_TYPES = {
    "swagger-ui.css": "text/css; charset=utf-8",
    "index.css": "text/css; charset=utf-8",
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "favicon-32x32.png": "image/png",
    "favicon-16x16.png": "image/png",
}


@pytest.fixture(scope="module")
def swagger_ui() -> SwaggerUI:
    return SwaggerUI.installed()


def _asset_url(swagger_ui: SwaggerUI, name: str) -> str:
    return f"/docs/static/{swagger_ui.asset_version}/{name}"


async def _page(client: QuartClient, path: str = "/docs", root_path: str = "") -> str:
    response = await client.get(path, root_path=root_path)
    assert response.status_code == 200
    return await response.get_data(as_text=True)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("oauth2-redirect.html", id="package-file-the-page-does-not-load"),
        pytest.param("swagger-editor-bundle.js", id="editor-bundle"),
        pytest.param("swagger-ui-bundle.js.map", id="source-map"),
        pytest.param("LICENSE", id="license"),
        pytest.param("core.py", id="package-module"),
        pytest.param("SWAGGER-UI.CSS", id="other-case"),
    ],
)
async def test_a_file_the_page_does_not_load_is_404(
    client: QuartClient, swagger_ui: SwaggerUI, name: str
) -> None:
    response = await client.get(_asset_url(swagger_ui, name))

    await assert_error(response, 404)


@pytest.mark.parametrize(
    "tail",
    [
        pytest.param("../__init__.py", id="dot-dot"),
        pytest.param("../../core.py", id="dot-dot-twice"),
        pytest.param("..%2F__init__.py", id="encoded-slash"),
        pytest.param("%2e%2e/%2e%2e/core.py", id="encoded-dots"),
        pytest.param("swagger-ui.css/../../core.py", id="through-a-real-name"),
        pytest.param("/etc/passwd", id="absolute"),
    ],
)
async def test_no_path_leaves_the_asset_list(
    client: QuartClient, swagger_ui: SwaggerUI, tail: str
) -> None:
    response = await client.get(_asset_url(swagger_ui, tail))

    await assert_error(response, 404)
    assert b"import" not in await response.get_data(as_text=False)


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/docs/static/0.0.0/swagger-ui.css", id="another-version"),
        pytest.param("/docs/static/swagger-ui.css", id="no-version"),
        pytest.param("/static/swagger-ui.css", id="app-static-folder"),
        pytest.param("/docs/swagger-initializer.js", id="initializer-without-version"),
    ],
)
async def test_an_asset_elsewhere_is_404(client: QuartClient, path: str) -> None:
    response = await client.get(path)

    await assert_error(response, 404)


async def test_a_missing_package_is_refused_when_the_app_is_built(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(docs_page.importlib.util, "find_spec", lambda name: None)

    with pytest.raises(RuntimeError, match="swagger-ui-py is not installed"):
        SwaggerUI.installed()


async def test_a_package_without_the_page_s_files_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "static").mkdir()
    (tmp_path / "static" / "swagger-ui.css").write_text("")
    spec = importlib.machinery.ModuleSpec("swagger_ui", None, is_package=True)
    spec.submodule_search_locations = [str(tmp_path)]
    monkeypatch.setattr(docs_page.importlib.util, "find_spec", lambda name: spec)

    with pytest.raises(RuntimeError, match=r"swagger-ui-bundle\.js") as refused:
        SwaggerUI.installed()
    assert "swagger-ui.css" not in str(refused.value)


@pytest.mark.parametrize("name", sorted(CONTENT_TYPES))
async def test_each_package_asset_is_served_as_installed(
    client: QuartClient, swagger_ui: SwaggerUI, name: str
) -> None:
    response = await client.get(_asset_url(swagger_ui, name))

    assert response.status_code == 200
    assert response.headers["Content-Type"] == CONTENT_TYPES[name]
    assert response.headers.getlist("Cache-Control") == [ASSET_CACHE_CONTROL]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert await response.get_data(as_text=False) == (swagger_ui.folder / name).read_bytes()


async def test_the_initializer_is_ours_and_cached_like_the_rest(
    client: QuartClient, swagger_ui: SwaggerUI
) -> None:
    response = await client.get(_asset_url(swagger_ui, INITIALIZER))

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert response.headers.getlist("Cache-Control") == [ASSET_CACHE_CONTROL]
    body = await response.get_data(as_text=False)
    assert body == INITIALIZER_SOURCE
    assert body != (swagger_ui.folder / INITIALIZER).read_bytes()  # not the Petstore sample
    assert b"petstore" not in body


async def test_a_cached_asset_is_revalidated_without_its_body(
    client: QuartClient, swagger_ui: SwaggerUI
) -> None:
    first = await client.get(_asset_url(swagger_ui, "swagger-ui.css"))
    etag = first.headers["ETag"]

    again = await client.get(
        _asset_url(swagger_ui, "swagger-ui.css"), headers={"If-None-Match": etag}
    )

    assert again.status_code == 304
    assert await again.get_data(as_text=False) == b""


def test_the_asset_version_follows_the_package_and_the_initializer(
    swagger_ui: SwaggerUI, monkeypatch: pytest.MonkeyPatch
) -> None:
    installed = swagger_ui.asset_version
    assert installed.startswith(f"{swagger_ui.version}-")
    assert SwaggerUI(swagger_ui.folder, "0.0.1").asset_version != installed

    monkeypatch.setattr(docs_page, "INITIALIZER_SOURCE", INITIALIZER_SOURCE + b"\n")

    assert swagger_ui.asset_version != installed


def test_the_installed_swagger_ui_reads_openapi_3_1(swagger_ui: SwaggerUI) -> None:
    bundle = (swagger_ui.folder / "swagger-ui-bundle.js").read_bytes()

    found = _BUNDLE_VERSION.search(bundle)

    assert found is not None, "no PACKAGE_VERSION in swagger-ui-bundle.js"
    assert int(found.group(1)) >= 5, "Swagger UI 5 is the first to read OpenAPI 3.1"


async def test_the_page_runs_no_inline_code(client: QuartClient) -> None:
    page = await _page(client)

    scripts = _SCRIPT.findall(page)
    assert scripts
    for attributes, body in scripts:
        assert 'src="' in attributes
        assert body.strip() == ""
    assert "<style" not in page
    assert "style=" not in page
    assert not re.search(r"\son[a-z]+=", page), "no event handler attributes"
    assert "javascript:" not in page


async def test_the_page_loads_its_assets_and_names_the_document(
    client: QuartClient, swagger_ui: SwaggerUI
) -> None:
    page = await _page(client)

    linked = _LINKED.findall(page)
    assert sorted(linked) == sorted(
        _asset_url(swagger_ui, name) for name in [*CONTENT_TYPES, INITIALIZER]
    )
    assert 'data-openapi-url="/openapi.json"' in page
    assert "<title>minor-illusion</title>" in page
    for url in linked:
        assert (await client.get(url)).status_code == 200, url


async def test_under_a_root_path_every_url_in_the_page_carries_it(client: QuartClient) -> None:
    page = await _page(client, "/api/v1/docs", root_path="/api/v1")

    linked = _LINKED.findall(page)
    assert linked
    for url in linked:
        assert url.startswith("/api/v1/docs/static/"), url
        response = await client.get(url, root_path="/api/v1")
        assert response.status_code == 200, url
    assert 'data-openapi-url="/api/v1/openapi.json"' in page
    document = await client.get("/api/v1/openapi.json", root_path="/api/v1")
    assert document.status_code == 200


async def test_the_docs_routes_stay_out_of_the_document(client: QuartClient, app: Quart) -> None:
    response = await client.get("/openapi.json")
    paths = (await response.get_json())["paths"]

    docs_rules = [rule.rule for rule in app.url_map.iter_rules() if rule.rule.startswith("/docs")]
    assert len(docs_rules) == 2  # the page and its assets
    assert not [path for path in paths if path.startswith(("/docs", "/static"))]
