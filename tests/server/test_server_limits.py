"""A server with a token and tight limits: authentication, 413/408/429/503, and that it stays live."""

from __future__ import annotations

import io
import json
import socket
import threading
import time

import httpx
import numpy as np
import pytest
import soundfile as sf
from websockets.exceptions import InvalidStatus

from tests.server.helpers import TOKEN, server_env, speech, start_server, wav_bytes
from tests.server.test_server_stream import open_stream, ready_stream

BOUNDARY = "avtestboundary"


@pytest.fixture(scope="module")
def strict(tmp_path_factory):
    folder = tmp_path_factory.mktemp("strict")
    s = start_server(folder, "--max-upload-mb", "1", "--max-audio-s", "30", "--max-conversions", "1",
                     "--convert-timeout-s", "0.5", "--upload-timeout-s", "1.5", "--voice", "higher",
                     token=TOKEN, env=server_env(folder, AUTOVOICE_TOKEN=TOKEN))
    yield s
    assert s.stop() == 0, "".join(s.log)
    assert not any(word in "".join(s.log) for word in ("Traceback", "ERROR")), "".join(s.log)


def multipart(data: bytes, filename: str = "in.wav", **fields: str) -> bytes:
    parts = [f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n' for k, v in fields.items()]
    head = "".join(parts) + (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
                             "Content-Type: audio/wav\r\n\r\n")
    return head.encode() + data + f"\r\n--{BOUNDARY}--\r\n".encode()


def raw_request(server, head_lines: list[str], body: bytes = b"") -> socket.socket:
    sock = socket.create_connection((server.host, server.port), timeout=15)
    head = "\r\n".join([*head_lines, f"Host: {server.host}", f"Authorization: Bearer {server.token}", "", ""])
    sock.sendall(head.encode() + body)
    return sock


def read_response(sock: socket.socket) -> tuple[int, dict, dict]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    while len(body) < int(headers.get("content-length", 0)):
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, json.loads(body)


def post(server, data: bytes, auth: bool = True, **fields) -> httpx.Response:
    with server.client(auth) as c:
        return c.post("/api/v1/convert", files={"file": ("in.wav", data, "audio/wav")}, data=fields)


def short_clip() -> bytes:
    x, sr = speech(16000)
    return wav_bytes(x[:8000], sr)


# ---------------------------------------------------------------------- token
def test_the_api_needs_the_token_and_the_probes_do_not(strict):
    for path in ("/health", "/health/live", "/health/ready", "/metrics", "/openapi.json"):
        assert strict.get(path, auth=False).status_code == 200, path
    for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": TOKEN},
                    {"Authorization": f"Basic {TOKEN}"}, {"Authorization": f"Bearer {TOKEN}x"}):
        r = httpx.get(strict.url + "/api/v1/voices", headers=headers)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", headers
        assert "Authorization: Bearer" in r.json()["error"]
    r = httpx.get(strict.url + "/api/v1/voices", headers={"Authorization": f"bearer {TOKEN}"})
    assert r.status_code == 200 and any(v["name"] == "higher" and v["loaded"] for v in r.json())
    # Refused before anything else is looked at: no size or type hints to a caller without the token.
    assert post(strict, b"x" * 10, auth=False).status_code == 401
    ok = post(strict, short_clip())
    assert ok.status_code == 200 and ok.headers["x-autovoice-voice"] == "higher"
    spec = strict.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {"type": "http", "scheme": "bearer"}
    assert spec["paths"]["/api/v1/convert"]["post"]["security"] == [{"bearerAuth": []}]
    assert "security" not in spec["paths"]["/health/ready"]["get"]
    assert strict.metric("autovoice_rejected_requests_total", 'reason="unauthorized"') >= 6


def test_the_websocket_needs_the_token_too(strict):
    with pytest.raises(InvalidStatus) as refused:
        open_stream(strict, auth=False)
    assert refused.value.response.status_code == 403
    ws, ready = ready_stream(strict, sample_rate=48000)
    assert ready["voice"] == "higher"
    ws.close()


# ---------------------------------------------------------------------- limits
def test_a_declared_oversized_upload_is_refused_before_its_body_is_read(strict):
    sock = raw_request(strict, ["POST /api/v1/convert HTTP/1.1", f"Content-Type: multipart/form-data; boundary={BOUNDARY}",
                                f"Content-Length: {5 * 1024 * 1024}"])
    status, headers, body = read_response(sock)  # answered although not one body byte was sent
    sock.close()
    assert status == 413 and "limit of 1 MB" in body["error"]
    assert strict.get("/health/live").status_code == 200


def test_a_chunked_upload_is_counted_as_it_arrives(strict):
    body = multipart(b"\x00" * (1024 * 1024 + 200_000))

    def chunks():
        for i in range(0, len(body), 65536):
            yield body[i : i + 65536]

    with strict.client() as c:
        r = c.post("/api/v1/convert", content=chunks(),
                   headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
    assert "content-length" not in r.request.headers  # chunked: only counting can stop it
    assert r.status_code == 413 and "larger than this server's limit" in r.json()["error"]
    assert strict.get("/health/live").status_code == 200


def test_audio_longer_than_the_limit_is_413(strict):
    x = 0.1 * np.sin(2 * np.pi * 200 * np.arange(8000 * 40) / 8000)  # 40 s at 8 kHz: 640 kB, under the byte limit
    r = post(strict, wav_bytes(x, 8000))
    assert r.status_code == 413 and "lasts 40 s, longer than this server's limit of 30 s" in r.json()["error"]


def test_a_small_file_that_decodes_to_too_many_samples_is_413(strict):
    """Size is checked on what the upload decodes to: 8 channels of 192 kHz silence for 20 s is a
    few kB of FLAC but 31 million samples (the limit at --max-audio-s 30 is 2.9 million)."""
    buf = io.BytesIO()
    sf.write(buf, np.zeros((192000 * 20, 8), np.float32), 192000, format="FLAC")
    assert len(buf.getvalue()) < 1_000_000
    r = post(strict, buf.getvalue())
    assert r.status_code == 413, r.text
    assert "million samples" in r.json()["error"]


def test_a_stalled_upload_holds_no_slot_and_gets_408(strict):
    clip = short_clip()
    body = multipart(clip)
    # An upload that stops half-way, on a server with one conversion slot...
    sock = raw_request(strict, ["POST /api/v1/convert HTTP/1.1", f"Content-Type: multipart/form-data; boundary={BOUNDARY}",
                                f"Content-Length: {len(body)}"], body[: len(body) // 2])
    time.sleep(0.3)
    assert post(strict, clip).status_code == 200  # ...does not keep a complete one out
    # and is given up on after --upload-timeout-s.
    status, _, err = read_response(sock)
    sock.close()
    assert status == 408 and "did not complete within 1.5 s" in err["error"]
    assert post(strict, clip).status_code == 200


def test_a_conversion_over_the_time_limit_is_503_and_really_stops(strict):
    x = 0.1 * np.sin(2 * np.pi * 150 * np.arange(8000 * 29) / 8000)  # 29 s: several seconds of work here
    t0 = time.monotonic()
    r = post(strict, wav_bytes(x, 8000))
    answered = time.monotonic() - t0
    assert r.status_code == 503 and r.headers["retry-after"] == "5", r.text
    assert "did not finish within 0.5 s" in r.json()["error"] and answered < 3.0
    # The cancelled conversion stops at its next one-second chunk instead of running to the end.
    deadline = time.monotonic() + 0.7
    while strict.metric("autovoice_conversions_in_flight") != 0.0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert strict.metric("autovoice_conversions_in_flight") == 0.0
    assert strict.metric("autovoice_conversions_total", 'outcome="timeout"') >= 1
    ok = post(strict, short_clip())
    assert ok.status_code == 200
    y, _ = sf.read(io.BytesIO(ok.content))
    assert len(y) == 8000


def test_after_all_refusals_the_server_is_live_and_ready(strict):
    threads = [threading.Thread(target=post, args=(strict, b"nonsense")) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert strict.get("/health/live", auth=False).json() == {"status": "alive", "heartbeat_age_s": pytest.approx(0, abs=2)}
    assert strict.get("/health/ready", auth=False).status_code == 200
