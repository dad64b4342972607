"""WebSocket /api/v1/stream against a real server: round trips, the protocol's refusals, and backpressure."""

from __future__ import annotations

import json
import socket
import threading
import time

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from engine.config import ChainConfig
from engine.offline.convert import convert_signal
from engine.voices.builtin import PRESETS, BuiltinVoice
from tests.server.helpers import median_cents, speech

PATH = "/api/v1/stream"


def open_stream(server, opening: dict | str | bytes | None = None, auth: bool = True):
    headers = {"Authorization": f"Bearer {server.token}"} if (auth and server.token) else {}
    ws = connect(server.ws_url + PATH, additional_headers=headers, proxy=None, compression=None,
                 open_timeout=10, close_timeout=5, max_size=None)
    if opening is not None:
        ws.send(opening if isinstance(opening, (str, bytes)) else json.dumps(opening))
    return ws


def ready_stream(server, **opening):
    ws = open_stream(server, opening)
    ready = json.loads(ws.recv(timeout=15))
    assert ready["type"] == "ready", ready
    return ws, ready


def round_trip(ws, frames: list[bytes]) -> tuple[bytes, dict]:
    """Send every frame and then "end" from a thread while this one collects the replies."""
    sender_error: list[BaseException] = []

    def send_all() -> None:
        try:
            for f in frames:
                ws.send(f)
            ws.send(json.dumps({"type": "end"}))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            sender_error.append(exc)

    t = threading.Thread(target=send_all)
    t.start()
    out = []
    while True:
        msg = ws.recv(timeout=30)
        if isinstance(msg, str):
            end = json.loads(msg)
            break
        out.append(msg)
    t.join(10)
    assert not sender_error, sender_error
    with pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
    return b"".join(out), end


def expect_error(ws, code: int, *needles: str) -> str:
    msg = json.loads(ws.recv(timeout=15))
    assert msg["type"] == "error", msg
    for n in needles:
        assert n.lower() in msg["error"].lower(), msg
    with pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == code, closed.value
    return msg["error"]


def test_float32_mono_stream_equals_the_offline_conversion(server):
    x, sr = speech(48000)
    ws, ready = ready_stream(server, sample_rate=48000, channels=1, dtype="float32", voice="deeper",
                             transpose=3, formant=0)
    voice = BuiltinVoice(PRESETS["deeper"])
    assert ready["latency_samples"] == voice.latency_samples  # same rate: only the voice's look-ahead
    assert ready["params"] == {"transpose_st": 3.0, "formant_st": 0.0, "lookahead_ms": 9.0} and ready["voice"] == "deeper"
    frame = 960  # 20 ms
    frames = [x[i : i + frame].astype("<f4").tobytes() for i in range(0, len(x), frame)]
    data, end = round_trip(ws, frames)
    y = np.frombuffer(data, "<f4")
    assert end == {"type": "end", "samples_in": len(x), "samples_out": len(x)} and len(y) == len(x)
    # The same voice offline (whole file, padded and trimmed by its latency): identical samples,
    # which proves the stream is aligned (output i = input i) and loses nothing at either end.
    # offline_twin=False: the stream runs the live voice, not the file path's longer look-ahead.
    ref = convert_signal(x, sr, voice, {"transpose_st": 3.0, "formant_st": 0.0}, ChainConfig(), offline_twin=False)
    assert np.max(np.abs(y - ref)) < 1e-4
    err, voiced = median_cents(x, y, sr, 3.0)
    assert voiced > 100 and abs(err) < 30.0, (err, voiced)


def test_int16_stereo_stream_at_16k_keeps_length_and_shifts_pitch(server):
    x, sr = speech(16000)
    pcm = np.round(np.stack([x, 0.5 * x], axis=1) * 32767).astype("<i2")
    ws, ready = ready_stream(server, sample_rate=16000, channels=2, dtype="int16", voice="deeper", transpose=-5)
    assert ready["max_frame_samples"] == 16000 and ready["byte_order"] == "little"
    frame = 333  # odd sizes must work: the server buffers to whole hops
    frames = [pcm[i : i + frame].tobytes() for i in range(0, len(pcm), frame)]
    data, end = round_trip(ws, frames)
    y = np.frombuffer(data, "<i2").reshape(-1, 2).astype(np.float32) / 32768.0
    assert end["samples_in"] == end["samples_out"] == len(x) == len(y)
    assert np.array_equal(y[:, 0], y[:, 1])
    err, voiced = median_cents(pcm.mean(axis=1) / 32768.0, y[:, 0], sr, -5.0)
    assert voiced > 50 and abs(err) < 30.0, (err, voiced)


@pytest.mark.parametrize("opening, code, needles", [
    ({"channels": 1}, 1003, ["sample_rate"]),
    ({"sample_rate": 1000}, 1003, ["sample_rate", "8000"]),
    ({"sample_rate": 48000, "dtype": "float64"}, 1003, ["dtype", "float32"]),
    ({"sample_rate": 48000, "channels": 6}, 1003, ["channels"]),
    ({"sample_rate": 48000, "voice": "../../etc"}, 1003, ["not a valid voice name"]),
    ({"sample_rate": 48000, "voice": "nobody"}, 1003, ["no voice called"]),
    ({"sample_rate": 48000, "transpose": 50}, 1003, ["transpose", "-24"]),
    ({"sample_rate": 48000, "rate": 4}, 1003, ["unknown field", "rate"]),
    ("not json", 1003, ["json"]),
    (b"\x00\x01", 1003, ["first message"]),
])
def test_bad_openings_get_one_sentence_and_a_close_code(server, opening, code, needles):
    expect_error(open_stream(server, opening), code, *needles)


def test_bad_frames_close_the_session_and_the_server_lives_on(server):
    ws, ready = ready_stream(server, sample_rate=48000)
    ws.send(np.zeros(ready["max_frame_samples"] + 1, "<f4").tobytes())
    expect_error(ws, 1009, "longer than the limit")

    ws, _ = ready_stream(server, sample_rate=48000, channels=2, dtype="int16")
    ws.send(b"\x00" * 6)  # one and a half stereo int16 frames
    expect_error(ws, 1003, "whole number")

    ws, _ = ready_stream(server, sample_rate=48000)
    ws.send(json.dumps({"type": "pause"}))
    expect_error(ws, 1003, "end")
    assert server.get("/health/live").status_code == 200


def test_sessions_beyond_the_limit_are_refused_with_1013(server):
    held = [ready_stream(server, sample_rate=48000)[0] for _ in range(4)]  # the default limit
    try:
        expect_error(open_stream(server), 1013, "try again later")
    finally:
        for ws in held:
            ws.close()
    deadline = time.monotonic() + 5
    while server.metric("autovoice_stream_sessions") != 0.0 and time.monotonic() < deadline:
        time.sleep(0.1)
    ws, _ = ready_stream(server, sample_rate=48000)  # free again
    ws.close()


def test_a_client_that_sends_without_reading_meets_backpressure_not_a_growing_server(server):
    """96 MB pushed at a session that nobody reads: the server must stop reading, not buffer it all."""
    ws, ready = ready_stream(server, sample_rate=48000, voice="deeper")
    rss0 = server.rss_bytes()
    frame = (0.1 * np.random.default_rng(0).standard_normal(4800)).astype("<f4").tobytes()  # 100 ms, 19.2 kB
    sent = {"bytes": 0}
    stopped = threading.Event()

    def flood() -> None:
        try:
            for _ in range(5000):
                ws.send(frame)
                sent["bytes"] += len(frame)
        except Exception:  # noqa: BLE001 - the socket is cut below
            pass
        stopped.set()

    t = threading.Thread(target=flood, daemon=True)
    t.start()
    time.sleep(4.0)
    blocked = not stopped.is_set()
    sent_mb = sent["bytes"] / 1e6
    grown_mb = (server.rss_bytes() - rss0) / 1e6
    high_water = server.metric("autovoice_stream_queue_high_water_frames")
    ws.socket.shutdown(socket.SHUT_RDWR)  # cut the connection under the blocked sender
    t.join(10)
    assert blocked, f"all {sent_mb:.0f} MB were accepted: nothing pushed back"
    assert sent_mb < 60, f"{sent_mb:.0f} MB accepted before the sender blocked"
    assert grown_mb < 50, f"the server grew by {grown_mb:.0f} MB while {sent_mb:.0f} MB were pushed at it"
    assert high_water is not None and 1 <= high_water <= ready["queue_frames"]
    deadline = time.monotonic() + 10
    while server.metric("autovoice_stream_sessions") != 0.0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert server.metric("autovoice_stream_sessions") == 0.0  # the cut session was cleaned up
    assert server.get("/health/live").status_code == 200


def _lag_samples(y: np.ndarray, ref: np.ndarray, reach: int = 64) -> int:
    """The shift of ``y`` against ``ref`` (positive: ``y`` late) that correlates best, within +-reach."""
    core = ref[reach : len(ref) - reach]
    scores = [float(np.dot(y[reach + s : len(y) - reach + s], core)) for s in range(-reach, reach + 1)]
    return int(np.argmax(scores)) - reach


@pytest.mark.parametrize("sample_rate", [16000, 22050, 44100, 96000])
def test_every_voice_streams_aligned_with_its_offline_conversion(server, sample_rate):
    """At rates other than the voices' 48 kHz the stream resamples in and out. Voices that work in
    frames (robot, whisper, the pitch shifters) must still see their frames where offline
    conversion puts them: before the fix robot and whisper came back 32 samples late at every
    one of these rates. The shifters' pitch marks react to the two resamplers' last-bit
    differences, so they are held to the alignment only; the others to the samples too."""
    x, sr = speech(sample_rate)
    x = x[sr // 2 : sr * 3 // 2]  # one second of speech
    frames = [x[i : i + 777].astype("<f4").tobytes() for i in range(0, len(x), 777)]
    for name, preset in PRESETS.items():
        ws, ready = ready_stream(server, sample_rate=sr, voice=name)
        data, end = round_trip(ws, frames)
        y = np.frombuffer(data, "<f4")
        assert end["samples_out"] == len(x) == len(y), name
        ref = convert_signal(x, sr, BuiltinVoice(preset), {}, ChainConfig(), offline_twin=False)  # the live path
        lag = _lag_samples(y, ref)
        assert abs(lag) <= 1, f"{name} at {sr} Hz: the stream is {lag} samples off the offline result"
        if not preset.shift:
            nrmse = float(np.sqrt(np.mean((y - ref) ** 2) / np.mean(ref**2)))
            assert nrmse < 0.15, f"{name} at {sr} Hz: stream and offline differ by {nrmse:.2f} of the signal"
