"""The shared server: one real `autovoice serve` on 127.0.0.1 for the whole session."""

from __future__ import annotations

import pytest

from tests.server.helpers import start_server


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """The default server: loopback, no token, default limits, default voice."""
    s = start_server(tmp_path_factory.mktemp("serve"))
    yield s
    assert s.stop() == 0, "".join(s.log)
    assert not any(word in "".join(s.log) for word in ("Traceback", "ERROR")), "".join(s.log)
