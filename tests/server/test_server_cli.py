"""`autovoice serve` as a user starts it: refusals at start, a voice that fails to load, and --live on JACK."""

from __future__ import annotations

import json
import socket
import time

import pytest

from engine.server.config import is_loopback
from tests.server.helpers import TOKEN, run_serve, server_env, start_server


def assert_one_sentence(proc, *needles: str) -> str:
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("autovoice: error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr and "listening" not in proc.stderr, proc.stderr
    for n in needles:
        assert n.lower() in errors[0].lower(), errors[0]
    return errors[0]


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.1", "example.invalid"])
def test_a_non_loopback_address_without_a_token_is_refused(tmp_path, host):
    t0 = time.monotonic()
    proc = run_serve("--host", host, "--port", "0", env=server_env(tmp_path))
    line = assert_one_sentence(proc, f"refusing to listen on {host} without an api token", "AUTOVOICE_TOKEN", "--token")
    assert line.count(". ") == 0  # one sentence
    assert time.monotonic() - t0 < 20  # refused before any engine work


def test_loopback_names_and_addresses_need_no_token():
    assert is_loopback("127.0.0.1") and is_loopback("127.8.9.10") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("10.0.0.1")


def test_a_short_token_is_refused(tmp_path):
    proc = run_serve("--host", "0.0.0.0", "--port", "0", "--token", "secret", env=server_env(tmp_path))
    assert_one_sentence(proc, "at least 16 characters", "secrets.token_urlsafe")


def test_a_taken_port_is_one_sentence(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        proc = run_serve("--port", str(port), env=server_env(tmp_path))
    assert_one_sentence(proc, f"cannot listen on 127.0.0.1 port {port}", "--port")


def test_an_unknown_voice_is_one_sentence(tmp_path):
    proc = run_serve("--port", "0", "--voice", "nobody", env=server_env(tmp_path))
    assert_one_sentence(proc, "no voice called 'nobody'")


def test_live_mode_without_usable_devices_is_one_sentence(tmp_path):
    proc = run_serve("--port", "0", "--live", "--input", "no-such-device-xyz", env=server_env(tmp_path))
    # "No input device matches 'no-such-device-xyz'", or with no sound system at all "No audio input device".
    assert_one_sentence(proc, "input device")


def test_all_interfaces_with_a_token_from_the_environment(tmp_path):
    s = start_server(tmp_path, "--host", "0.0.0.0", token=TOKEN, env=server_env(tmp_path, AUTOVOICE_TOKEN=TOKEN))
    try:
        assert "API token required" in "".join(s.log)
        s.host = "127.0.0.1"
        assert s.get("/api/v1/voices", auth=False).status_code == 401
        assert s.get("/api/v1/voices").status_code == 200
        assert s.get("/health/ready", auth=False).status_code == 200
    finally:
        assert s.stop() == 0


def test_a_voice_that_fails_to_load_leaves_the_server_live_but_not_ready(tmp_path):
    folder = tmp_path / "data" / "voices" / "Broken"
    folder.mkdir(parents=True)
    (folder / "voice.json").write_text(json.dumps({"kind": "rvc", "model": "missing.pth"}))
    s = start_server(tmp_path, "--voice", "Broken", wait_ready=False)
    try:
        deadline = time.monotonic() + 30
        while True:
            r = s.get("/health/ready")
            if r.json().get("last_error") or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert r.status_code == 503, r.text
        body = r.json()
        assert body["status"] == "not_ready" and body["last_error"]
        assert body["missing"] == ["voice_loaded", "warmed_up", "synthesizer"]
        assert body["components"]["worker_alive"] is True
        assert s.get("/health/live").status_code == 200
        h = s.get("/health").json()
        assert h["status"] == "degraded" and h["components"]["model_loaded"] is False
        assert h["components"]["synthesizer"] is False and h["last_error"] == body["last_error"]
        assert s.metric("autovoice_ready") == 0.0 and s.metric("autovoice_live") == 1.0
    finally:
        assert s.stop() == 0


@pytest.mark.jack
def test_live_mode_runs_the_device_stream_and_reports_it(tmp_path, jack_server):
    s = start_server(tmp_path, "--live", "--input", "system", "--output", "system", "--voice", "robot")
    try:
        ready = s.get("/health/ready").json()
        assert ready["components"] == {"voice_loaded": True, "warmed_up": True, "worker_alive": True,
                                       "stream_running": True, "synthesizer": True}
        assert s.get("/health").json()["components"]["live_stream"] is True
        first = s.metric("autovoice_live_blocks_total")
        time.sleep(1.5)
        blocks = s.metric("autovoice_live_blocks_total")
        assert first is not None and blocks - first > 50  # ~100 blocks of 10 ms in 1.5 s
        assert s.metric("autovoice_live_stream_running") == 1.0
        assert s.metric("autovoice_live_latency_seconds", 'part="total"') > 0.01
        assert s.metric("autovoice_block_compute_seconds_count", 'source="live"') > 50
        assert s.metric("autovoice_live_output_underflows_total") is not None
    finally:
        assert s.stop() == 0, "".join(s.log)
    assert "Traceback" not in "".join(s.log)


def test_sigterm_during_a_long_conversion_stops_the_server_promptly(tmp_path):
    """Graceful shutdown waits a few seconds for requests, then the running conversion is stopped too."""
    import threading

    import httpx
    import numpy as np

    from tests.server.helpers import wav_bytes

    s = start_server(tmp_path)
    x = 0.1 * np.sin(2 * np.pi * 150 * np.arange(8000 * 240) / 8000)  # 4 min: many seconds of work here
    replies: list = []

    def post() -> None:
        try:
            with s.client(timeout=60) as c:
                replies.append(c.post("/api/v1/convert", files={"file": ("long.wav", wav_bytes(x, 8000), "audio/wav")}))
        except httpx.HTTPError as exc:
            replies.append(exc)

    t = threading.Thread(target=post)
    t.start()
    deadline = time.monotonic() + 10
    while s.metric("autovoice_conversions_in_flight") != 1.0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert s.metric("autovoice_conversions_in_flight") == 1.0
    t0 = time.monotonic()
    assert s.stop() == 0, "".join(s.log)
    stopped_s = time.monotonic() - t0
    t.join(30)
    assert stopped_s < 9.0, f"took {stopped_s:.1f} s to stop"  # 5 s of grace, then the conversion is cancelled
    assert replies and not (isinstance(replies[0], httpx.Response) and replies[0].status_code == 200)


def test_a_weak_token_is_accepted_with_a_warning(tmp_path):
    weak = "a" * 16
    s = start_server(tmp_path, "--host", "0.0.0.0", token=weak, env=server_env(tmp_path, AUTOVOICE_TOKEN=weak))
    try:
        log = "".join(s.log)
        assert "warning: the API token is easy to guess (it uses only 1 different character)" in log, log
        assert "secrets.token_urlsafe" in log
        s.host = "127.0.0.1"
        assert s.get("/api/v1/voices").status_code == 200  # a warning, not a refusal
    finally:
        assert s.stop() == 0


def test_a_generated_token_gives_no_warning(tmp_path):
    import secrets

    from engine.server.config import token_weakness

    assert token_weakness(TOKEN) is None
    assert all(token_weakness(secrets.token_urlsafe(12)) is None for _ in range(2000))
    for weak, reason in (("abcdefghijklmnop", "consecutive"), ("abab" * 4, "2 different"),
                         ("MySecretToken-2024", "'secret'")):
        assert reason in token_weakness(weak), weak


def test_any_127_address_is_loopback_and_needs_no_token(tmp_path):
    """README and code agree: all of 127.0.0.0/8 (and ::1) is loopback, served without a token."""
    s = start_server(tmp_path, "--host", "127.0.0.2")
    try:
        assert s.host == "127.0.0.2" and "no token: local use only" in "".join(s.log)
        assert s.get("/api/v1/voices").status_code == 200
    finally:
        assert s.stop() == 0
