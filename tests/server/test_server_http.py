"""The HTTP side of `autovoice serve` against a real uvicorn server: probes, metrics, OpenAPI, conversions,
refusals, and a burst of concurrent requests."""

from __future__ import annotations

import io
import threading

import httpx
import numpy as np
import pytest
import soundfile as sf

from engine.server.app import HealthBody, ReadyBody, VoiceBody
from tests.server.helpers import SINGING, median_cents, speech, wav_bytes


def convert(server, data: bytes, filename: str = "in.wav", content_type: str = "audio/wav", **fields) -> httpx.Response:
    with server.client() as c:
        return c.post("/api/v1/convert", files={"file": (filename, data, content_type)},
                      data={k: str(v) for k, v in fields.items()})


def assert_error(r: httpx.Response, status: int, *needles: str) -> None:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"].endswith("."), body
    for n in needles:
        assert n.lower() in body["error"].lower(), body


# ---------------------------------------------------------------------- probes
def test_probes_tell_the_truth(server):
    live = server.get("/health/live")
    assert live.status_code == 200 and live.json()["status"] == "alive"
    assert live.json()["heartbeat_age_s"] < 2.0

    ready = server.get("/health/ready")
    assert ready.status_code == 200
    body = ReadyBody.model_validate(ready.json())
    assert body.status == "ready" and body.missing == []
    assert body.components == {"voice_loaded": True, "warmed_up": True, "worker_alive": True, "synthesizer": True}

    h = server.get("/health")
    assert h.status_code == 200
    health = HealthBody.model_validate(h.json())
    import torch

    c = health.components
    assert health.status == "healthy" and health.voice == "deeper"
    assert c.api and c.model_loaded and c.synthesizer and c.worker
    assert c.gpu_available == torch.cuda.is_available() == health.system.gpu.available
    assert health.system.gpu.device_count == (torch.cuda.device_count() if torch.cuda.is_available() else 0)
    assert not c.voice_cloner and c.singing_conversion_pipeline and not c.live_stream
    assert health.voice_device is not None and health.voice_device.device == "cpu"
    assert set(health.not_implemented) == {"voice_cloner"}
    assert 0.0 < health.system.memory_percent <= 100.0 and 0.0 <= health.system.cpu_percent <= 100.0
    assert health.system.process_rss_bytes > 10e6


def test_metrics_are_prometheus_text_and_count_what_happened(server):
    from prometheus_client.parser import text_string_to_metric_families

    before = server.metric("autovoice_http_requests_total", 'method="GET",route="/health/live",status="200"') or 0.0
    for _ in range(3):
        server.get("/health/live")
    r = server.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    ours = {n for n in families if n.startswith("autovoice_")}
    for name in ("autovoice_http_requests", "autovoice_http_request_duration_seconds", "autovoice_conversions",
                 "autovoice_block_compute_seconds", "autovoice_stream_frame_latency_seconds",
                 "autovoice_live_output_underflows", "autovoice_live_input_overflow_frames",
                 "autovoice_live_device_xruns", "autovoice_gpu_available", "autovoice_gpu_memory_used_bytes",
                 "autovoice_ready", "autovoice_live"):
        assert name in ours, (name, sorted(ours))
    assert families["autovoice_http_request_duration_seconds"].type == "histogram"
    assert families["autovoice_block_compute_seconds"].type == "histogram"
    assert families["autovoice_live_device_xruns"].type == "counter"
    after = server.metric("autovoice_http_requests_total", 'method="GET",route="/health/live",status="200"')
    assert after == before + 3
    assert server.metric("autovoice_ready") == 1.0 and server.metric("autovoice_live") == 1.0
    import torch

    assert server.metric("autovoice_gpu_available") == float(torch.cuda.is_available())
    # Unknown paths share one label value, so a scanner cannot blow up the series count.
    server.get("/no/such/path/1")
    server.get("/no/such/path/2")
    assert server.metric("autovoice_http_requests_total", 'method="GET",route="other",status="404"') >= 2


def test_openapi_documents_exactly_what_is_served(server):
    spec = server.get("/openapi.json").json()
    documented = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    jobs = {("POST", "/api/v1/jobs"), ("GET", "/api/v1/jobs"), ("GET", "/api/v1/jobs/{job_id}"),
            ("GET", "/api/v1/jobs/{job_id}/result"), ("GET", "/api/v1/jobs/{job_id}/stems/{stem}"),
            ("DELETE", "/api/v1/jobs/{job_id}")}  # song jobs: tests/server/test_jobs.py
    assert documented == {("GET", "/health"), ("GET", "/health/live"), ("GET", "/health/ready"), ("GET", "/metrics"),
                          ("GET", "/api/v1/voices"), ("POST", "/api/v1/convert")} | jobs
    for _method, path in documented - {("POST", "/api/v1/convert")} - (jobs - {("GET", "/api/v1/jobs")}):
        assert server.get(path).status_code == 200, path
    op = spec["paths"]["/api/v1/convert"]["post"]
    assert set(op["responses"]) >= {"200", "401", "404", "413", "415", "422", "429", "503"}
    assert "audio/wav" in op["responses"]["200"]["content"]
    ref = op["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"].split("/")[-1]
    form = spec["components"]["schemas"][ref]
    assert form["required"] == ["file"] and {"file", "voice", "transpose", "formant", "params"} == set(form["properties"])
    assert "/api/v1/stream" in spec["info"]["description"]  # the WebSocket protocol is described
    assert "securitySchemes" not in spec.get("components", {})  # no token on this server


def test_voices_lists_the_builtin_presets(server):
    r = server.get("/api/v1/voices")
    voices = [VoiceBody.model_validate(v) for v in r.json()]
    names = [v.name for v in voices]
    assert {"natural", "deeper", "higher", "robot", "whisper"} <= set(names)
    deeper = next(v for v in voices if v.name == "deeper")
    assert deeper.loaded and {p.name for p in deeper.params} == {"transpose_st", "formant_st", "lookahead_ms"}


# ---------------------------------------------------------------------- conversion
@pytest.mark.parametrize("semitones", [3.0, -5.0])
def test_convert_keeps_duration_and_moves_pitch_by_the_asked_transpose(server, semitones):
    x, sr = speech()  # 44.1 kHz mono real speech
    r = convert(server, wav_bytes(x, sr), voice="deeper", transpose=semitones, formant=0)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "audio/wav"
    y, sr_out = sf.read(io.BytesIO(r.content), dtype="float32")
    assert sr_out == sr and y.shape == x.shape
    assert float(r.headers["X-AutoVoice-Duration-Seconds"]) == pytest.approx(len(x) / sr, abs=1e-5)
    err, frames = median_cents(x, y, sr, semitones)
    assert frames > 100 and abs(err) < 30.0, f"{semitones:+} st: median error {err:+.1f} cents over {frames} frames"


def test_convert_keeps_stereo_rate_and_format_of_a_flac(server):
    x, sr = sf.read(SINGING, dtype="float32")
    stereo = np.stack([x, 0.5 * x], axis=1)[: sr * 2]
    r = convert(server, wav_bytes(stereo, sr, fmt="FLAC", subtype="PCM_16"), "take.flac", "audio/flac", voice="higher")
    assert r.status_code == 200, r.text
    y, sr_out = sf.read(io.BytesIO(r.content), dtype="float32")
    assert sr_out == sr and y.shape == stereo.shape
    assert np.allclose(y[:, 0], y[:, 1])  # the voice goes to every channel
    assert 'filename="take_higher.wav"' in r.headers["content-disposition"]


def test_bad_uploads_get_one_json_sentence_and_the_server_stays_live(server):
    x, sr = speech()
    good = wav_bytes(x, sr)
    assert_error(convert(server, b"just some text", "notes.txt", "text/plain"), 415, "text/plain")
    assert_error(convert(server, b"RIFF this is not a wav" * 50, "fake.wav", "audio/wav"), 415, "fake.wav", "decode")
    assert_error(convert(server, good, transpose=99), 422, "transpose", "between -24 and 24")
    assert_error(convert(server, good, transpose="abc"), 422, "transpose")
    assert_error(convert(server, good, voice="robot", transpose=2), 422, "robot", "transpose")
    assert_error(convert(server, good, params="[1, 2]"), 422, "params")
    assert_error(convert(server, good, voice="no-such-voice"), 404, "no voice called")
    assert_error(convert(server, b"", "empty.wav"), 422, "empty")
    assert_error(convert(server, wav_bytes(np.full(1000, np.nan, np.float32), sr, subtype="FLOAT")), 422, "invalid samples")
    assert_error(convert(server, good[: len(good) // 2]), 422, "truncated")
    with server.client() as c:
        assert_error(c.post("/api/v1/convert", json={"file": "x"}), 415, "multipart/form-data")
        assert_error(c.post("/api/v1/convert", data={"voice": "deeper"},
                            files={"other": ("a.wav", good, "audio/wav")}), 422, "'file'")
        assert_error(c.get("/api/v1/convert"), 405, "does not accept GET")
        assert_error(c.get("/api/v1/nothing-here"), 404, "no /api/v1/nothing-here")
    assert server.get("/health/live").status_code == 200
    assert server.get("/health/ready").status_code == 200


@pytest.mark.parametrize("name", ["../../../etc/passwd", "..", "a/b", "voices/../../x", "C:\\\\x", ".hidden"])
def test_voice_names_cannot_reach_the_file_system(server, name):
    x, sr = speech()
    r = convert(server, wav_bytes(x[:4410], sr), voice=name)
    assert r.status_code in (404, 422), r.text
    assert "not a valid voice name" in r.json()["error"] or "no voice called" in r.json()["error"]


@pytest.mark.parametrize("filename", ["../../../../tmp/evil.wav", "..\\..\\evil.wav", "/etc/passwd", "a/../../b.wav"])
def test_file_names_are_never_paths(server, filename, tmp_path):
    x, sr = speech()
    r = convert(server, wav_bytes(x[:8820], sr), filename=filename)
    assert r.status_code == 200, r.text
    disposition = r.headers["content-disposition"]
    shown = disposition.split('filename="')[1].rstrip('"')
    assert "/" not in shown and "\\" not in shown and ".." not in shown, shown
    assert shown.endswith("_deeper.wav")


def test_a_burst_of_concurrent_conversions_is_bounded_and_leaves_the_server_live(server):
    x, sr = speech(48000)
    data = wav_bytes(np.tile(x, 2), sr)  # ~5 s: long enough that requests overlap
    assert convert(server, data).status_code == 200  # warm: first-use allocations are not a leak
    rss = [server.rss_bytes()]

    def burst(n: int = 12) -> list[httpx.Response]:
        results: list = [None] * n
        gate = threading.Barrier(n)

        def one(i: int) -> None:
            gate.wait()
            results[i] = convert(server, data)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        return results

    for _ in range(3):
        results = burst()
        codes = [r.status_code for r in results]
        assert set(codes) <= {200, 429}, codes
        assert codes.count(200) >= 1 and codes.count(429) >= 1, codes  # 12 at once, 2 slots: some must wait
        for r in results:
            if r.status_code == 429:
                assert r.headers["retry-after"] == "1" and "retry" in r.json()["error"]
            else:
                assert len(sf.read(io.BytesIO(r.content))[0]) == 2 * len(x)
        assert server.get("/health/live").status_code == 200
        rss.append(server.rss_bytes())
    assert server.metric("autovoice_conversions_total", 'outcome="busy"') >= 3
    assert server.metric("autovoice_conversions_in_flight") == 0.0
    # Three bursts in a row must not keep growing the process: after the first (allocator pools,
    # caches) the resident size stays within a small margin.
    grown_mb = (max(rss[2:]) - rss[1]) / 1e6
    assert grown_mb < 40, f"RSS grew by {grown_mb:.0f} MB over bursts 2-3: {[round(v / 1e6) for v in rss]} MB"
    assert (rss[-1] - rss[0]) / 1e6 < 150, [round(v / 1e6) for v in rss]


def test_serve_and_its_requests_never_change_saved_settings(tmp_path):
    """Headless runs use their own values for that run only: a user's saved voice and values stay."""
    from engine.api import Engine
    from engine.settings import SettingsStore
    from tests.server.helpers import server_env, start_server, wav_bytes

    env = server_env(tmp_path)  # the same folders the autouse fixture gives this test's own Engine
    e = Engine(load_default_voice=False)  # the user's desktop session: deeper at +1
    e.load_voice("deeper", {"transpose": 1.0}).result()
    e.close()
    saved = SettingsStore(tmp_path / "config")
    before = saved.path.read_bytes()
    s = start_server(tmp_path, "--voice", "child", env=env)
    try:
        x = (0.3 * np.sin(2 * np.pi * 200 * np.arange(16000) / 16000)).astype(np.float32)
        r = convert(s, wav_bytes(x, 16000), voice="giant", transpose=-3, params='{"formant": 1}')
        assert r.status_code == 200, r.text
    finally:
        assert s.stop() == 0
    assert saved.path.read_bytes() == before
