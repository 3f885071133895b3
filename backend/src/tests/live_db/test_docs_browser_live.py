"""`/docs` in a real headless Chromium, served by a real `minor-illusion serve`, with no network
beyond this machine.

Every request the browser makes goes through a route that aborts anything not for 127.0.0.1 or
localhost, so the page passes only if Swagger UI and everything it loads come from the service
itself (as they must on a machine with no internet). Content-Security-Policy violations are
collected from the page, and they, page errors and console errors fail a test, so the page's
policy is checked against what Swagger UI really does, not what it is believed to do.

Needs Debian's `chromium` at /usr/bin/chromium (`apt-get install chromium`; `.ci/run` installs
it); Playwright drives it and never downloads a browser of its own.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Page,
    Playwright,
    Route,
    expect,
    sync_playwright,
)
from playwright.sync_api import Error as PlaywrightError

from tests.conftest import TEST_SECRET, Served, served

pytestmark = pytest.mark.live_db

CHROMIUM = Path(os.environ.get("CHROMIUM_BINARY") or "/usr/bin/chromium")
"""Debian's Chromium, or another Chromium-based browser named by CHROMIUM_BINARY (the GitHub
workflow points it at the runner's Google Chrome)."""
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-quic",
    "--disable-sync",
]
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost"})
ROOT_PATH = "/api/v1"
TIMEOUT_MS = 30_000
COLLECT_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(`${event.effectiveDirective} ${event.blockedURI}`);
});
"""

if not CHROMIUM.exists():
    pytest.skip(
        f"no Chromium at {CHROMIUM}: `apt-get install chromium` (.ci/run installs it), or "
        "set CHROMIUM_BINARY, to open /docs in a real browser",
        allow_module_level=True,
    )


@dataclass
class Visit:
    """A browser page with its guards: what it tried off this machine, and what went wrong."""

    page: Page
    blocked: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    requested: list[str] = field(default_factory=list)

    def violations(self) -> list[str]:
        return list(self.page.evaluate("window.__cspViolations || []"))

    def assert_clean(self) -> None:
        assert self.blocked == [], "requests beyond this machine"
        assert self.violations() == [], "Content-Security-Policy violations"
        assert self.page_errors == []
        assert self.console_errors == []


def _service(postgres_url: str, folder: Path, root_path: str | None) -> Iterator[Served]:
    env = {key: value for key, value in os.environ.items() if key != "ROOT_PATH"}
    env.update(
        DATABASE_URL=postgres_url,
        SECRET_KEY=TEST_SECRET,
        DATA_DIR=str(folder / "data"),
        LOG_LEVEL="WARNING",
    )
    if root_path is not None:
        env["ROOT_PATH"] = root_path
    with served(
        env, folder / "serve.log", "--no-migrate", ready_path=f"{root_path or ''}/healthz"
    ) as serve:
        yield serve


@pytest.fixture(scope="module")
def service(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`minor-illusion serve` on the session's embedded PostgreSQL (the page needs no data)."""
    yield from _service(postgres_url, tmp_path_factory.mktemp("docs"), None)


@pytest.fixture(scope="module")
def service_under_root_path(
    postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """The same, with ROOT_PATH set, as behind a proxy that serves it under a prefix."""
    yield from _service(postgres_url, tmp_path_factory.mktemp("docs-root-path"), ROOT_PATH)


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    expect.set_options(timeout=TIMEOUT_MS)  # the page renders slowly on a busy machine
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    yield chromium
    chromium.close()


@pytest.fixture
def visit(browser: Browser) -> Iterator[Visit]:
    """A fresh page whose requests off this machine are aborted and recorded."""
    context = browser.new_context(service_workers="block")
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    visit = Visit(page)

    def guard(route: Route) -> None:
        url = route.request.url
        visit.requested.append(url)
        if urlsplit(url).hostname in LOCAL_HOSTS:
            route.continue_()
        else:
            visit.blocked.append(url)
            route.abort("blockedbyclient")

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            visit.console_errors.append(message.text)

    context.route("**/*", guard)
    context.add_init_script(COLLECT_VIOLATIONS)
    page.on("console", on_console)
    page.on("pageerror", lambda error: visit.page_errors.append(str(error)))
    yield visit
    context.close()


def _operations(base_url: str) -> set[tuple[str, str]]:
    """(METHOD, path) of every operation in the served document."""
    document = httpx.get(f"{base_url}/openapi.json", timeout=10).json()
    return {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
    }


def _listed_operations(page: Page) -> list[tuple[str, str]]:
    listed = page.locator(".opblock").evaluate_all(
        """blocks => blocks.map(block => [
            block.querySelector(".opblock-summary-method").textContent.trim(),
            block.querySelector(".opblock-summary-path").dataset.path,
        ])"""
    )
    return [(str(method), str(path)) for method, path in listed]


def test_the_guard_aborts_and_records_a_request_beyond_this_machine(visit: Visit) -> None:
    visit.page.set_content('<img src="http://example.invalid/pixel.png">')
    visit.page.wait_for_load_state("load")

    assert visit.blocked == ["http://example.invalid/pixel.png"]
    assert visit.console_errors, "the aborted image is reported on the console"
    with pytest.raises(AssertionError, match="beyond this machine"):
        visit.assert_clean()


def test_the_docs_policy_refuses_what_it_does_not_allow(visit: Visit, service: Served) -> None:
    visit.page.goto(f"{service.base_url}/docs")
    expect(visit.page.locator(".opblock").first).to_be_visible()

    with pytest.raises(PlaywrightError):
        visit.page.evaluate("fetch('https://cdn.jsdelivr.net/npm/swagger-ui-dist/x.js')")
    visit.page.evaluate(
        "() => { const s = document.createElement('script');"
        " s.textContent = 'window.__inline = 1'; document.body.append(s); }"
    )

    visit.page.wait_for_function("window.__cspViolations.length >= 2")
    assert visit.page.evaluate("window.__inline") is None, "an inline script ran"
    violations = visit.violations()
    assert "connect-src https://cdn.jsdelivr.net/npm/swagger-ui-dist/x.js" in violations
    assert "script-src-elem inline" in violations
    assert visit.blocked == [], "the policy refused the request before the network"


def test_the_page_lists_every_operation_of_the_document(visit: Visit, service: Served) -> None:
    expected = _operations(service.base_url)
    assert len(expected) >= 20  # the comparison below is not vacuous

    response = visit.page.goto(f"{service.base_url}/docs")

    assert response is not None
    assert response.status == 200
    expect(visit.page.locator(".opblock")).to_have_count(len(expected))
    listed = _listed_operations(visit.page)
    assert sorted(listed) == sorted(expected)
    expect(visit.page.locator(".info .title")).to_contain_text("minor-illusion")
    assert {urlsplit(url).path for url in visit.requested} >= {"/docs", "/openapi.json"}
    visit.assert_clean()


def _try_healthz(visit: Visit, api_url: str) -> None:
    """Open the docs of the API at `api_url`, "Try it out" → "Execute" on `GET /healthz`, and
    expect the call at `api_url`/healthz and 200 with its body on the page."""
    visit.page.goto(f"{api_url}/docs")
    healthz = visit.page.locator(
        ".opblock-get", has=visit.page.locator('.opblock-summary-path[data-path="/healthz"]')
    )

    healthz.locator(".opblock-summary").click()
    healthz.get_by_role("button", name="Try it out").click()
    with visit.page.expect_response(lambda response: "/healthz" in response.url) as answered:
        healthz.get_by_role("button", name="Execute").click()

    assert answered.value.url == f"{api_url}/healthz"
    assert answered.value.status == 200
    status = healthz.locator(".live-responses-table tbody .response-col_status")
    expect(status).to_have_text("200")
    body = healthz.locator(".live-responses-table tbody .response-col_description")
    expect(body).to_contain_text('"status": "ok"')
    visit.assert_clean()


def test_try_it_out_on_healthz_shows_200(visit: Visit, service: Served) -> None:
    _try_healthz(visit, service.base_url)


def test_under_a_root_path_try_it_out_calls_under_it(
    visit: Visit, service_under_root_path: Served
) -> None:
    _try_healthz(visit, f"{service_under_root_path.base_url}{ROOT_PATH}")


def test_under_a_root_path_the_page_loads_everything_under_it(
    visit: Visit, service_under_root_path: Served
) -> None:
    base_url = service_under_root_path.base_url
    expected = _operations(f"{base_url}{ROOT_PATH}")

    visit.page.goto(f"{base_url}{ROOT_PATH}/docs")

    expect(visit.page.locator(".opblock")).to_have_count(len(expected))
    assert sorted(_listed_operations(visit.page)) == sorted(expected)
    paths = [urlsplit(url).path for url in visit.requested]
    assert f"{ROOT_PATH}/openapi.json" in paths
    outside = [path for path in paths if not path.startswith(f"{ROOT_PATH}/")]
    assert outside == [], "every URL of the page carries ROOT_PATH"
    visit.assert_clean()
