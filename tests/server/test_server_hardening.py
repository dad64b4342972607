"""The ways a hostile or broken client could wedge, mislead or misuse the server (issue 13), each tried
against a real `autovoice serve` on 127.0.0.1: clients that never read, stalled uploads, oversized
and dribbled headers, bytes that are not HTTP, oversized WebSocket frames, deeply nested JSON,
foreign Host and Origin headers, damaged audio files."""

from __future__ import annotations

import json
import socket
import threading
import time

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.server.helpers import TOKEN, server_env, speech, start_server, wav_bytes
from tests.server.test_server_limits import BOUNDARY, multipart, read_response
from tests.server.test_server_stream import PATH, expect_error, open_stream, ready_stream

IDLE_S = 2.0
HEADER_TIMEOUT_S = 2.0


@pytest.fixture(scope="module")
def tight(tmp_path_factory):
    """No token (loopback), one stream and one conversion at a time, short idle and header limits."""
    folder = tmp_path_factory.mktemp("tight")
    s = start_server(folder, "--max-streams", "1", "--stream-idle-timeout-s", str(IDLE_S), "--max-conversions", "1",
                     "--header-timeout-s", str(HEADER_TIMEOUT_S), "--upload-timeout-s", "30", "--voice", "natural")
    yield s
    assert s.stop() == 0, "".join(s.log)
    assert not any(word in "".join(s.log) for word in ("Traceback", "ERROR")), "".join(s.log)


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """A token server on loopback."""
    folder = tmp_path_factory.mktemp("guarded")
    s = start_server(folder, token=TOKEN, env=server_env(folder, AUTOVOICE_TOKEN=TOKEN))
    yield s
    assert s.stop() == 0, "".join(s.log)
    assert not any(word in "".join(s.log) for word in ("Traceback", "ERROR")), "".join(s.log)


def raw(server, data: bytes, timeout_s: float = 30.0) -> socket.socket:
    sock = socket.create_connection((server.host, server.port), timeout=timeout_s)
    if data:
        sock.sendall(data)
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes (the socket's timeout only guards against a hang)."""
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def json_error(response: bytes, status: int) -> str:
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode()), response[:300]
    assert b"content-type: application/json" in head.lower(), head
    error = json.loads(body)["error"]
    assert error.endswith("."), error
    return error


# ---------------------------------------------------------------------- 1. a client that never reads
def test_a_stream_client_that_sends_but_never_reads_is_disconnected_and_frees_its_session(tight):
    """The only session is taken by a client that pushes audio and reads nothing back. The server
    must cut it off after --stream-idle-timeout-s of not being read, so a new session gets in
    (before the fix it held the session for good and every newcomer got 1013)."""
    ws, ready = ready_stream(tight, sample_rate=48000, voice="natural")
    frame = (0.1 * np.random.default_rng(1).standard_normal(4800)).astype("<f4").tobytes()
    stop = threading.Event()
    failure: list[BaseException] = []

    def flood() -> None:
        try:
            while not stop.is_set():
                ws.send(frame)
        except BaseException as exc:  # noqa: BLE001 - the expected end: the server cut us off
            failure.append(exc)

    t0 = time.monotonic()
    sender = threading.Thread(target=flood, daemon=True)
    sender.start()
    admitted = None
    while time.monotonic() - t0 < 60:  # a guard against hanging, not a speed goal
        other = open_stream(tight)  # a full server answers before any opening, so send it after
        try:
            other.send(json.dumps({"sample_rate": 16000}))
        except ConnectionClosed:
            pass
        reply = json.loads(other.recv(timeout=15))
        if reply["type"] == "ready":
            admitted = time.monotonic() - t0
            other.close()
            break
        assert "try again later" in reply["error"], reply
        with pytest.raises(ConnectionClosed):
            other.recv(timeout=10)  # the 1013 close follows the message
        time.sleep(0.5)
    stop.set()
    sender.join(10)
    print(f"\nnon-reading stream client: a new session was admitted {admitted} s after it started flooding "
          f"(idle limit {IDLE_S:g} s)")
    assert admitted is not None, "the non-reading client still holds the only stream session after 60 s"
    assert failure, "the non-reading client's connection is still open"
    assert tight.get("/health/live").status_code == 200


# ---------------------------------------------------------------------- 5. header size and idle connections
def test_an_oversized_header_is_refused_with_431_before_the_token_is_looked_at(guarded):
    rss0 = guarded.rss_bytes()
    sock = raw(guarded, b"GET /api/v1/voices HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Filler: ")
    sent = 0
    try:
        for _ in range(256):  # up to 16 MB, in 64 kB pieces: the server answers long before
            sock.sendall(b"a" * 65536)
            sent += 65536
    except OSError:
        pass  # the server answered and closed while we were still sending
    try:
        answer = read_all(sock)
    except ConnectionResetError:
        answer = b""
    sock.close()
    grown_mb = (guarded.rss_bytes() - rss0) / 1e6
    print(f"\noversized header: answered after {sent / 1e6:.1f} MB sent; server RSS {grown_mb:+.1f} MB")
    if answer:  # a reset can overtake the answer while we are still sending; the size bound holds either way
        assert "16 kB" in json_error(answer, 431)
    assert sent < 4 * 1024 * 1024 and grown_mb < 20
    # An ordinary request on a fresh connection is answered.
    assert guarded.get("/health/live").status_code == 200


def test_headers_at_the_limit_are_still_served(guarded):
    filler = "b" * (15 * 1024)
    with guarded.client() as c:
        assert c.get("/api/v1/voices", headers={"X-Filler": filler}).status_code == 200


def test_slowloris_connections_are_closed_and_others_are_served_meanwhile(tight):
    """Fifty connections that dribble their headers a byte at a time: each must get 408 and be
    closed after --header-timeout-s, while an ordinary request is answered at once."""
    socks = [raw(tight, b"GET /health/live HTTP/1.1\r\n") for _ in range(50)]
    t0 = time.monotonic()
    closed_at: dict[int, float] = {}
    answers: dict[int, bytes] = {}

    def dribble() -> None:
        for step in range(60):
            for i, s in enumerate(socks):
                if i in closed_at:
                    continue
                try:
                    s.sendall(b"X-Slow-%d: %d\r\n" % (step, step))
                except OSError:
                    closed_at[i] = time.monotonic() - t0
            if len(closed_at) == len(socks):
                return
            time.sleep(0.5)

    t = threading.Thread(target=dribble, daemon=True)
    t.start()
    assert tight.get("/health/live").status_code == 200  # served while fifty heads are pending
    for i, s in enumerate(socks):
        try:
            answers[i] = read_all(s)
        except ConnectionResetError:
            answers[i] = b""
        closed_at.setdefault(i, time.monotonic() - t0)
        s.close()
    t.join(40)
    print(f"\nslowloris: 50 dribbling connections closed after {min(closed_at.values()):.1f}-"
          f"{max(closed_at.values()):.1f} s (header limit {HEADER_TIMEOUT_S:g} s)")
    with_answer = [a for a in answers.values() if a]
    assert len(with_answer) >= 45, f"only {len(with_answer)} of 50 got an answer before the close"
    for a in with_answer:
        assert "did not arrive within 2 s" in json_error(a, 408)
    assert tight.get("/health/live").status_code == 200


def test_a_connection_that_sends_nothing_is_closed_silently(tight):
    sock = raw(tight, b"")
    assert read_all(sock) == b""  # closed by the server after --header-timeout-s, without a reply
    sock.close()


def test_keep_alive_connections_serve_several_requests(tight):
    with tight.client() as c:
        for _ in range(3):
            assert c.get("/health/live").status_code == 200


# ---------------------------------------------------------------------- 8. every refusal is JSON
def test_bytes_that_are_not_http_get_a_json_400(guarded):
    for garbage in (b"HELLO THERE\r\n\r\n", b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
                    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64):  # the last: a TLS hello
        sock = raw(guarded, garbage)
        assert "not valid HTTP/1.1" in json_error(read_all(sock), 400)
        sock.close()
    assert guarded.get("/health/live").status_code == 200


def test_a_websocket_frame_over_the_protocol_limit_gets_a_json_reason_before_1009(tight):
    ws, ready = ready_stream(tight, sample_rate=48000)
    ws.send(b"\x00" * (2 * 1024 * 1024))  # over the protocol's ~1.5 MB cap, not only the session's limit
    error = expect_error(ws, 1009, "larger than", "max_frame_samples")
    assert error.endswith(".")


# ---------------------------------------------------------------------- 4. stalled uploads
def test_stalled_uploads_do_not_keep_a_complete_one_out(tight):
    """Two uploads that send 100 bytes and stall, on a server with one conversion slot: a third,
    complete one is converted at once (the slot is taken once an upload is in)."""
    x, sr = speech(16000)
    clip = wav_bytes(x[:16000], sr)
    body = multipart(clip)
    head = (f"POST /api/v1/convert HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; "
            f"boundary={BOUNDARY}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    stalled = [raw(tight, head + body[:100]) for _ in range(2)]
    time.sleep(0.3)  # both are inside the server, waiting for their bodies
    with tight.client() as c:
        r = c.post("/api/v1/convert", files={"file": ("in.wav", clip, "audio/wav")})
    assert r.status_code == 200, r.text
    # The stalled ones are still open (they get 408 after --upload-timeout-s); finishing one now works too.
    stalled[0].sendall(body[100:])
    assert read_all(stalled[0]).startswith(b"HTTP/1.1 200 ")
    for s in stalled:
        s.close()


# ---------------------------------------------------------------------- 2. deeply nested JSON
DEEP = "[" * 100_000 + "]" * 100_000


def test_deeply_nested_params_are_a_422_not_a_500(tight):
    x, sr = speech(16000)
    clip = wav_bytes(x[:1600], sr)
    for params in (DEEP, '{"transpose_st": ' + "[" * 50 + "]" * 50 + "}", '{"a": ' * 5000 + "1" + "}" * 5000):
        with tight.client() as c:
            r = c.post("/api/v1/convert", files={"file": ("in.wav", clip, "audio/wav")}, data={"params": params})
        assert r.status_code == 422, r.text[:300]
        assert "nests JSON more than 8 levels deep" in r.json()["error"]
    assert tight.get("/health/live").status_code == 200


def test_deeply_nested_stream_messages_are_refused_with_1003(tight):
    expect_error(open_stream(tight, DEEP), 1003, "more than 8 levels deep")
    expect_error(open_stream(tight, {"sample_rate": 48000, "params": {"x": [[[[[[[[[1]]]]]]]]]}}), 1003, "levels deep")
    ws, _ = ready_stream(tight, sample_rate=48000)
    ws.send('{"type": ' + "[" * 100_000)
    expect_error(ws, 1003, "end")


# ---------------------------------------------------------------------- 6. Host and Origin
def _ws_refusal(server, headers: dict) -> tuple[int, dict]:
    with pytest.raises(InvalidStatus) as refused:
        connect(server.ws_url + PATH, additional_headers=headers, proxy=None, open_timeout=10)
    response = refused.value.response
    return response.status_code, json.loads(response.body)


def test_without_a_token_foreign_origins_and_host_names_are_refused(tight):
    port = tight.port
    with tight.client() as c:
        # A page elsewhere posting a form (no CORS preflight is needed for that), or reading probes
        # through a DNS-rebinding name that resolves to 127.0.0.1.
        x, sr = speech(16000)
        r = c.post("/api/v1/convert", files={"file": ("in.wav", wav_bytes(x[:1600], sr), "audio/wav")},
                   headers={"Origin": "https://evil.example"})
        assert r.status_code == 403 and "web page at 'https://evil.example'" in r.json()["error"]
        for host in (f"evil.example:{port}", "rebind.attacker.test", f"10.0.0.1:{port}"):
            r = c.get("/health", headers={"Host": host})
            assert r.status_code == 403 and "addressed to localhost" in r.json()["error"], host
        assert c.get("/health", headers={"Origin": "null"}).status_code == 403
        # The server's own pages, loopback names and clients that send no Origin are served.
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", f"127.1.2.3:{port}", "app.localhost"):
            assert c.get("/health/live", headers={"Host": host}).status_code == 200, host
        assert c.get("/api/v1/voices", headers={"Origin": f"http://127.0.0.1:{port}"}).status_code == 200
        assert c.get("/api/v1/voices", headers={"Origin": f"http://localhost:{port}",
                                               "Host": f"localhost:{port}"}).status_code == 200
        assert c.get("/api/v1/voices", headers={"Origin": f"http://127.0.0.1:{port + 1}"}).status_code == 403
    status, body = _ws_refusal(tight, {"Origin": "https://evil.example"})
    assert status == 403 and "web page at 'https://evil.example'" in body["error"]
    upgrade = (f"GET {PATH} HTTP/1.1\r\nHost: evil.example:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
    sock = raw(tight, upgrade)
    answer = read_all(sock)
    sock.close()
    assert "addressed to localhost" in json_error(answer, 403)
    ws = connect(tight.ws_url + PATH, additional_headers={"Origin": f"http://127.0.0.1:{port}"}, proxy=None)
    ws.send(json.dumps({"sample_rate": 48000}))
    assert json.loads(ws.recv(timeout=15))["type"] == "ready"
    ws.close()
    assert tight.metric("autovoice_rejected_requests_total", 'reason="foreign_origin"') >= 3
    assert tight.metric("autovoice_rejected_requests_total", 'reason="foreign_host"') >= 4


def test_with_a_token_the_token_is_what_is_checked(guarded):
    """Any Host (a proxy's, a LAN name) and any Origin may reach a token server; without the
    token nothing under /api/ answers, WebSocket included (with a JSON reason)."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with guarded.client(auth=False) as c:
        assert c.get("/api/v1/voices", headers={**auth, "Host": "autovoice.lan:5000",
                                               "Origin": "https://tools.example"}).status_code == 200
        assert c.get("/api/v1/voices", headers={"Host": "autovoice.lan"}).status_code == 401
        assert c.get("/health/ready", headers={"Host": "autovoice.lan"}).status_code == 200
    status, body = _ws_refusal(guarded, {"Origin": "https://evil.example"})
    assert status == 403 and "Authorization: Bearer" in body["error"]
    ws = connect(guarded.ws_url + PATH, additional_headers={**auth, "Origin": "https://tools.example"}, proxy=None)
    ws.send(json.dumps({"sample_rate": 48000}))
    assert json.loads(ws.recv(timeout=15))["type"] == "ready"
    ws.close()


# ---------------------------------------------------------------------- 3. truncated files, 7. huge floats
from tests.damaged import FORMATS, cut, encode, huge_float_wav, without_length_header  # noqa: E402


def _convert(server, data: bytes, filename: str):
    with server.client() as c:
        return c.post("/api/v1/convert", files={"file": (filename, data, "application/octet-stream")},
                      data={"voice": "natural"})


def test_a_truncated_upload_in_any_format_is_a_422(tight):
    x, sr = speech()
    x = x[: 2 * sr]
    cases = {name: encode(x, sr, name) for name in FORMATS}
    mp3, _ = cases["mp3"]
    cases["mp3-without-length"] = (without_length_header(mp3), ".mp3")
    for name, (data, ext) in cases.items():
        r = _convert(tight, cut(data, 0.5), f"take{ext}")
        assert r.status_code == 422, (name, r.status_code, r.text[:200])
        error = r.json()["error"]
        assert f"'take{ext}'" in error and "truncated" in error and "upload" not in error, (name, error)
    for name in ("wav", "ogg-vorbis", "ogg-opus", "mp3", "aiff"):  # whole files still convert
        data, ext = cases[name]
        assert _convert(tight, data, f"take{ext}").status_code == 200, name


def test_a_float_upload_with_huge_samples_is_normalised_and_says_by_how_much(tight):
    x, sr = speech(16000)
    x = x[:16000]
    r = _convert(tight, huge_float_wav(x, sr), "huge.wav")
    assert r.status_code == 200, r.text
    peak_db = 20 * np.log10(np.max(np.abs(x.astype(np.float64) * 1e30)))
    assert float(r.headers["x-autovoice-input-gain-db"]) == pytest.approx(-peak_db, abs=0.05)
    ref = _convert(tight, wav_bytes((x / np.max(np.abs(x))).astype(np.float32), sr, subtype="FLOAT"), "ref.wav")
    assert float(ref.headers["x-autovoice-input-gain-db"]) == 0.0
    import io

    import soundfile as sf

    y, _ = sf.read(io.BytesIO(r.content), dtype="float32")
    y_ref, _ = sf.read(io.BytesIO(ref.content), dtype="float32")
    assert np.max(np.abs(y - y_ref)) < 1e-4 and np.mean(np.abs(y) > 0.99) < 0.01


def test_an_http_client_that_never_reads_its_reply_is_disconnected(tmp_path):
    """A conversion whose 17 MB reply nobody reads (more than the kernel's socket buffers hold):
    the server drops the connection after --upload-timeout-s without progress instead of keeping
    it, and its buffered reply, for as long as the client likes."""
    import psutil

    s = start_server(tmp_path, "--upload-timeout-s", "2", "--voice", "natural")
    try:
        x, sr = speech(48000)
        x = np.tile(x, int(np.ceil(60 * sr / len(x))))[: 60 * sr]
        clip = wav_bytes(np.stack([x, x], axis=1), sr)
        body = multipart(clip)
        head = (f"POST /api/v1/convert HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; "
                f"boundary={BOUNDARY}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
        sock = socket.create_connection((s.host, s.port), timeout=30)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.sendall(head + body)
        ours = sock.getsockname()[1]
        proc = psutil.Process(s.proc.pid)

        def held() -> bool:
            return any(c.raddr and c.raddr.port == ours and c.status == psutil.CONN_ESTABLISHED
                       for c in proc.net_connections(kind="tcp"))

        t0 = time.monotonic()
        while held() and time.monotonic() - t0 < 60:  # a guard against hanging, not a speed goal
            time.sleep(0.2)
        dropped_after_s = time.monotonic() - t0
        still_held = held()
        sock.close()
        print(f"\nnon-reading HTTP client: its connection was dropped {dropped_after_s:.1f} s after the upload "
              "(conversion included)")
        assert not still_held, "the server still holds the connection of a client that reads nothing after 60 s"
        assert s.get("/health/live").status_code == 200
    finally:
        assert s.stop() == 0
