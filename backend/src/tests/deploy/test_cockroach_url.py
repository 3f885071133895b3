"""TEST_COCKROACH_URL: the live tests on a CockroachDB server that is already running (in the
Compose stack, the cluster) instead of `cockroach demo`.

A server named this way was asked for, so what is wrong with it fails loudly instead of
skipping the CockroachDB runs. The embedded PostgreSQL stands in for a reachable server: it
speaks the same protocol, which is all the check before the tests uses.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy.engine import make_url

from tests.conftest import existing_cockroach_server, free_port


def test_a_url_that_is_not_cockroachdb_is_refused_at_once() -> None:
    started = time.monotonic()

    with pytest.raises(RuntimeError, match=r"TEST_COCKROACH_URL=postgresql://.*not a CockroachDB"):
        existing_cockroach_server("postgresql://root@127.0.0.1:26257/defaultdb", timeout=30)
    assert time.monotonic() - started < 5


def test_a_server_that_does_not_answer_fails_after_the_wait_without_its_password() -> None:
    url = f"cockroachdb://root:s3cret-word@127.0.0.1:{free_port()}/defaultdb?sslmode=disable"
    started = time.monotonic()

    with pytest.raises(RuntimeError, match=r"TEST_COCKROACH_URL=.*did not answer within 1 s") as e:
        existing_cockroach_server(url, timeout=1)
    assert "s3cret-word" not in str(e.value)
    assert 1 <= time.monotonic() - started < 15


@pytest.mark.live_db
def test_a_server_that_answers_is_used_as_given(embedded_server_url: str) -> None:
    served = make_url(embedded_server_url)
    url = served.set(drivername="cockroachdb").render_as_string(hide_password=False)

    assert existing_cockroach_server(url, timeout=10) == url
