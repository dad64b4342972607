"""Support-file downloads, against a real HTTP server on 127.0.0.1 (no outside network)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading

import pytest

from engine.errors import VoiceError
from engine.voices.rvc.assets import download_asset, missing_file_message, require_file


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_download_with_checksum_and_progress(server, tmp_path):
    root, base = server
    payload = bytes(range(256)) * 4000  # ~1 MB
    (root / "rmvpe.pt").write_bytes(payload)
    seen = []
    dest = tmp_path / "models" / "rmvpe.pt"
    got = download_asset(f"{base}/rmvpe.pt", dest, sha256=hashlib.sha256(payload).hexdigest(),
                         progress=lambda done, total: seen.append((done, total)))
    assert got == dest and dest.read_bytes() == payload
    assert seen[0] == (0, len(payload)) and seen[-1] == (len(payload), len(payload))
    assert all(a[0] <= b[0] for a, b in zip(seen, seen[1:]))
    assert [p.name for p in dest.parent.iterdir()] == ["rmvpe.pt"]  # no partial file left behind


def test_wrong_checksum_keeps_the_old_file(server, tmp_path):
    root, base = server
    (root / "hubert_base.pt").write_bytes(b"tampered")
    dest = tmp_path / "hubert_base.pt"
    dest.write_bytes(b"the user's good copy")
    with pytest.raises(VoiceError) as info:
        download_asset(f"{base}/hubert_base.pt", dest, sha256="0" * 64)
    assert "SHA-256" in str(info.value)
    assert dest.read_bytes() == b"the user's good copy"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hubert_base.pt", "served"]


def test_http_error_is_one_sentence(server, tmp_path):
    _, base = server
    with pytest.raises(VoiceError) as info:
        download_asset(f"{base}/nope.pt", tmp_path / "nope.pt")
    msg = str(info.value)
    assert "nope.pt" in msg and "404" in msg and "\n" not in msg
    assert not (tmp_path / "nope.pt").exists()


def test_require_file_message(tmp_path):
    with pytest.raises(VoiceError) as info:
        require_file("rmvpe.pt", "the RMVPE pitch model", tmp_path)
    assert str(info.value) == missing_file_message("rmvpe.pt", "the RMVPE pitch model", tmp_path)
    (tmp_path / "rmvpe.pt").write_bytes(b"x")
    assert require_file("rmvpe.pt", "the RMVPE pitch model", tmp_path) == tmp_path / "rmvpe.pt"
