"""The Jupyter notebooks in `jupyter/notebooks/`, executed against a real service.

A module fixture serves the API as a user would (`minor-illusion serve` in its own process, on
a fresh database of the session's embedded PostgreSQL) and seeds the demo data; each notebook
then runs top to bottom in a python3 kernel of this virtualenv, with its targets in the
environment as docker-compose sets them. A notebook's own `assert` cells are its checks (the
pages cover every todo once, the stale PATCH got 412, another organization's data is 404, the
stress run had no 5xx), so any cell error fails the test; the test adds that the tables and
the plots were produced. The committed files must carry no outputs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

from app import seed
from tests.conftest import TEST_SECRET, create_database, free_port, wait_for_http

pytestmark = pytest.mark.live_db

SOURCE_DIR = Path(__file__).resolve().parents[2]
NOTEBOOKS_DIR = Path(
    os.environ.get("NOTEBOOKS_DIR") or SOURCE_DIR.parent.parent / "jupyter" / "notebooks"
)
"""The checkout's notebooks; in the development container (the source alone at /app) Compose
mounts them elsewhere and says where."""
NOTEBOOKS = (
    "01-database.ipynb",
    "02-rest-api.ipynb",
    "03-stress-test.ipynb",
    "04-live-changes.ipynb",
)

if not NOTEBOOKS_DIR.is_dir():
    pytest.skip(
        f"no notebooks at {NOTEBOOKS_DIR}: set NOTEBOOKS_DIR to the repository's jupyter/notebooks",
        allow_module_level=True,
    )
DATABASE_NAME = "minor_illusion_notebooks"
CELL_TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class Service:
    api_url: str
    database_url: str
    data_dir: str


def minor_illusion() -> list[str]:
    """The console script of this virtualenv, or the module when it is not installed."""
    script = shutil.which("minor-illusion", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "app.cli"]


@pytest.fixture(scope="module")
def service(
    embedded_server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    """`minor-illusion serve` on a fresh database, seeded as the README says (no password
    given: the notebooks find the one `seed` kept); stopped with SIGTERM at the end."""
    database_url = create_database(embedded_server_url, DATABASE_NAME)
    folder = tmp_path_factory.mktemp("notebooks")
    data_dir = folder / "data"
    env = {key: value for key, value in os.environ.items() if key != "DEMO_PASSWORD"}
    env.update(
        DATABASE_URL=database_url,
        SECRET_KEY=TEST_SECRET,
        DATA_DIR=str(data_dir),
        LOG_LEVEL="WARNING",
    )
    port = free_port()
    log = folder / "serve.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [*minor_illusion(), "serve", "--port", str(port)],
            cwd=SOURCE_DIR,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    api_url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(process, api_url, "/readyz", log)
        seeded = subprocess.run(
            [*minor_illusion(), "seed"],
            cwd=SOURCE_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert seeded.returncode == 0, seeded.stderr
        yield Service(api_url=api_url, database_url=database_url, data_dir=str(data_dir))
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            returncode = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            pytest.fail(f"minor-illusion serve ignored SIGTERM:\n{log.read_text()}")
        assert returncode == 0, f"unclean stop on SIGTERM:\n{log.read_text()}"


@pytest.fixture(scope="module")
def kernel_specs(tmp_path_factory: pytest.TempPathFactory) -> KernelSpecManager:
    """Only `python3`, and it is this virtualenv's interpreter (not a user-wide kernel)."""
    kernels = tmp_path_factory.mktemp("kernels")
    (kernels / "python3").mkdir()
    spec = {
        "argv": [
            *(sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"),
            "--InteractiveShell.colors=nocolor",  # plain tracebacks in a failing test's report
        ],
        "display_name": "Python 3 (minor-illusion)",
        "language": "python",
    }
    (kernels / "python3" / "kernel.json").write_text(json.dumps(spec))
    return KernelSpecManager(kernel_dirs=[str(kernels)])


def execute(name: str, kernel_specs: KernelSpecManager, **env: str) -> nbformat.NotebookNode:
    """Run a notebook top to bottom as Jupyter would; a failing cell raises CellExecutionError."""
    notebook = nbformat.read(NOTEBOOKS_DIR / name, as_version=4)
    # Without MPLBACKEND the kernel draws inline (image/png outputs), as in Jupyter.
    kernel_env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"MPLBACKEND", "DEMO_PASSWORD"}
    }
    kernel_env.update(JUPYTER_PLATFORM_DIRS="1", **env)
    manager = KernelManager(kernel_name="python3", kernel_spec_manager=kernel_specs)
    client = NotebookClient(
        notebook,
        km=manager,
        timeout=CELL_TIMEOUT_SECONDS,
        resources={"metadata": {"path": str(NOTEBOOKS_DIR)}},
    )
    client.execute(env=kernel_env)
    return notebook


def outputs_of(notebook: nbformat.NotebookNode, mime: str) -> list[str]:
    """Every output of that MIME type, in cell order."""
    found = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if mime in data:
                found.append(str(data[mime]))
    return found


def client_env(service: Service) -> dict[str, str]:
    return {
        "API_URL": service.api_url,
        "DATABASE_URL": service.database_url,
        "DATA_DIR": service.data_dir,
        "DEMO_USER": seed.OWNER,
    }


def test_database_notebook_reads_the_demo_data_through_the_daos(
    service: Service, kernel_specs: KernelSpecManager
) -> None:
    notebook = execute("01-database.ipynb", kernel_specs, **client_env(service))

    tables = outputs_of(notebook, "text/html")
    assert len(tables) >= 8, "every listing is shown as a table"
    everything = "\n".join(tables)
    for shown in (seed.MEMBER, *seed.SPACES, "owner"):
        assert shown in everything
    assert "password_hash" not in everything


def test_rest_api_notebook_walks_the_whole_contract(
    service: Service, kernel_specs: KernelSpecManager
) -> None:
    notebook = execute("02-rest-api.ipynb", kernel_specs, **client_env(service))

    tables = outputs_of(notebook, "text/html")
    assert len(tables) >= 8
    everything = "\n".join(tables)
    for status in ("412", "422", "404", "403"):
        assert f"<td>{status}</td>" in everything


def test_stress_notebook_measures_every_level_without_5xx(
    service: Service, kernel_specs: KernelSpecManager
) -> None:
    notebook = execute(
        "03-stress-test.ipynb",
        kernel_specs,
        **client_env(service),
        STRESS_LEVELS="1,4",
        STRESS_SECONDS="1",
        STRESS_SEED_TODOS="20",
    )

    assert len(outputs_of(notebook, "image/png")) == 1, "the latency and throughput plots"
    summary = outputs_of(notebook, "text/html")[0]
    assert "throughput (req/s)" in summary
    assert "p99 (ms)" in summary


def test_live_changes_notebook_plots_the_delivery_of_every_change(
    service: Service, kernel_specs: KernelSpecManager
) -> None:
    notebook = execute(
        "04-live-changes.ipynb",
        kernel_specs,
        **client_env(service),
        LIVE_STREAMS="5",
        LIVE_SECONDS="2",
    )

    assert len(outputs_of(notebook, "image/png")) == 1, "the delivery latency plots"
    summary = outputs_of(notebook, "text/html")[-1]
    assert "delivery latency (ms)" in summary


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_has_no_outputs(name: str) -> None:
    notebook = nbformat.read(NOTEBOOKS_DIR / name, as_version=4)
    nbformat.validate(notebook)

    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code
    assert all(cell.outputs == [] for cell in code), "clear the outputs before committing"
    assert all(cell.execution_count is None for cell in code), "no execution counts"
    assert notebook.cells[0].cell_type == "markdown", "first say what the notebook needs"
    assert notebook.metadata["kernelspec"]["name"] == "python3"


def test_every_notebook_is_tested() -> None:
    assert sorted(path.name for path in NOTEBOOKS_DIR.glob("*.ipynb")) == sorted(NOTEBOOKS)
