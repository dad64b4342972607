"""The ``autovoice`` command line: its parser, and the commands that run in a terminal.

A front: it talks to ``engine.api`` only. The launcher (``autovoice.py`` at the top of the tree)
parses with :func:`build_parser` and sends ``gui`` to the desktop app, ``serve`` to the headless
server and everything else to :func:`run`; :func:`guarded` turns every user mistake into one
sentence on stderr and exit status 1 (2 for a malformed command line; tracebacks only with ``--debug``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from engine import api
from engine.errors import AutoVoiceError


def _device_arg(value: str) -> str | int:
    return int(value) if value.strip().lstrip("-").isdigit() else value


def _add_device_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", metavar="DEV",
                   help="where neural voices run: auto (a GPU when there is one; the default), cpu, cuda or cuda:N")


def _add_voice_options(p: argparse.ArgumentParser) -> None:
    _add_device_option(p)
    p.add_argument("--voice", help="voice name (see 'autovoice voices'); default: the last one used")
    p.add_argument("--transpose", type=float, metavar="N", help="pitch change in semitones (-24..24)")
    p.add_argument("--formant", type=float, metavar="N", help="formant shift in semitones (-12..12)")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="any other voice setting, e.g. --param index_rate=0.5 (repeatable)")
    p.add_argument("--gate", type=float, metavar="DB", help="noise gate threshold in dBFS (-100 = off)")
    p.add_argument("--input-gain", type=float, metavar="DB")
    p.add_argument("--output-gain", type=float, metavar="DB")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="autovoice",
        description="AutoVoice: a real-time voice changer. Without a command, opens the desktop app.",
    )
    parser.add_argument("--version", action="version", version=f"autovoice {api.__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("devices", help="list audio input and output devices")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("voices", help="list voices (built-in and installed)")
    p.add_argument("--json", action="store_true")
    vsub = p.add_subparsers(dest="voices_command", metavar="ACTION")
    imp = vsub.add_parser("import", help="install an RVC model (.pth or .onnx) as a voice")
    imp.add_argument("model", help="the model file (.pth or .onnx)")
    imp.add_argument("--index", help="its retrieval index (added_*.index)")
    imp.add_argument("--name", help="voice name (default: the model's file name)")
    rm = vsub.add_parser("remove", help="uninstall an installed voice")
    rm.add_argument("name")

    p = sub.add_parser("live", help="convert the microphone in real time until Ctrl-C")
    p.add_argument("--input", type=_device_arg, metavar="DEV", help="input device: index or name substring")
    p.add_argument("--output", type=_device_arg, metavar="DEV", help="output device (speakers or virtual cable)")
    p.add_argument("--monitor", type=_device_arg, metavar="DEV", help="optional second output, e.g. headphones")
    p.add_argument("--samplerate", type=int, metavar="HZ", help="device sample rate (default: the output's)")
    p.add_argument("--block-ms", type=float, metavar="MS", help="processing block (default 10 ms)")
    p.add_argument("--crossfade-ms", type=float, metavar="MS")
    p.add_argument("--prefill-ms", type=float, metavar="MS", help="output safety margin (default 10 ms)")
    # Each pair sets a remembered setting one way or the other (without either, the saved one holds).
    latency = p.add_mutually_exclusive_group()
    latency.add_argument("--fixed-latency", dest="adaptive_buffer", action="store_false", default=None,
                         help="never grow the output buffer after an underflow (remembered; undo with --adaptive-latency)")
    latency.add_argument("--adaptive-latency", dest="adaptive_buffer", action="store_true", default=None,
                         help="grow the output buffer by an underflow's gap and shrink it back when quiet (the default)")
    priority = p.add_mutually_exclusive_group()
    priority.add_argument("--normal-priority", dest="realtime_priority", action="store_false", default=None,
                          help="keep the conversion thread at normal priority (remembered; undo with --realtime-priority)")
    priority.add_argument("--realtime-priority", dest="realtime_priority", action="store_true", default=None,
                          help="run the conversion thread at real-time priority where the OS allows it (the default)")
    p.add_argument("--bypass", action="store_true", help="start with the voice bypassed (clean passthrough)")
    p.add_argument("--seconds", type=float, help="stop after this many seconds (default: until Ctrl-C)")
    p.add_argument("--stats-json", metavar="FILE", help="write the final health snapshot as JSON (also when the stream stops on an error)")
    p.add_argument("--timeline", metavar="FILE.npz",
                   help="record every block (time, compute, output ring level, underflows) and the garbage "
                        "collections, and write them to FILE.npz at the end: for finding what causes dropouts")
    _add_voice_options(p)

    p = sub.add_parser("convert", help="convert audio files (wav, flac, ogg, mp3) with a voice")
    p.add_argument("inputs", nargs="+", metavar="INPUT")
    p.add_argument("-o", "--output", required=True, help="output file, or a folder for several inputs")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_voice_options(p)

    p = sub.add_parser("serve", help="headless mode: HTTP API, probes and metrics")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; any other needs a token)")
    p.add_argument("--port", type=int, default=5000, help="TCP port (default 5000; 0 picks a free one)")
    p.add_argument("--token", default=None,
                   help="API bearer token, at least 16 characters (default: $AUTOVOICE_TOKEN)")
    p.add_argument("--voice", help="voice for conversions and --live (default: the last one used)")
    _add_device_option(p)
    p.add_argument("--live", action="store_true", help="also run the real-time stream on this machine's devices")
    p.add_argument("--input", type=_device_arg, metavar="DEV", help="with --live: input device")
    p.add_argument("--output", type=_device_arg, metavar="DEV", help="with --live: output device")
    p.add_argument("--monitor", type=_device_arg, metavar="DEV", help="with --live: optional second output")
    p.add_argument("--samplerate", type=int, metavar="HZ", help="with --live: device sample rate")
    p.add_argument("--block-ms", type=float, metavar="MS", help="with --live: processing block")
    p.add_argument("--prefill-ms", type=float, metavar="MS", help="with --live: output safety margin")
    p.add_argument("--max-upload-mb", type=float, metavar="MB", help="largest upload accepted (default 50)")
    p.add_argument("--max-audio-s", type=float, metavar="S", help="longest audio converted (default 600)")
    p.add_argument("--max-conversions", type=int, metavar="N",
                   help="file conversions at once; more get 429 (default 2)")
    p.add_argument("--convert-timeout-s", type=float, metavar="S", help="time limit per conversion; then 503 (default 120)")
    p.add_argument("--upload-timeout-s", type=float, metavar="S", help="time limit for an upload; then 408; also for a reply the client stops reading (default 60)")
    p.add_argument("--header-timeout-s", type=float, metavar="S",
                   help="time limit for a request's headers; then 408 and closed (default 10)")
    p.add_argument("--max-streams", type=int, metavar="N", help="WebSocket stream sessions at once (default 4)")
    p.add_argument("--stream-idle-timeout-s", type=float, metavar="S",
                   help="close a stream session that sends or reads nothing this long (default 60)")
    p.add_argument("--max-jobs", type=int, metavar="N", help="song jobs queued or running at once; more get 429 (default 8)")
    p.add_argument("--max-results-mb", type=float, metavar="MB", help="disk kept jobs may use; then 429 (default 2048)")
    p.add_argument("--keep-results-h", type=float, metavar="H", help="finished song jobs are deleted after H hours (default 24)")
    p.add_argument("--max-job-upload-mb", type=float, metavar="MB", help="largest song upload for a job (default 200)")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="warning",
                   help="server log level; 'info' also logs every request (default warning)")

    p = sub.add_parser("export-onnx", help="export an RVC .pth model to ONNX")
    p.add_argument("model")
    p.add_argument("-o", "--output", help="output .onnx path (default: beside the model)")

    _add_song_parser(sub)  # issue 9 block
    sub.add_parser("gui", help="open the desktop app")
    return parser


def voice_params_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The voice settings given on the command line, by the names users type (the voice's specs
    resolve aliases such as ``transpose``)."""
    params: dict[str, Any] = {}
    if getattr(args, "transpose", None) is not None:
        params["transpose"] = args.transpose
    if getattr(args, "formant", None) is not None:
        params["formant"] = args.formant
    for item in getattr(args, "param", []) or []:
        if "=" not in item:
            raise AutoVoiceError(f"--param '{item}' must look like NAME=VALUE, e.g. index_rate=0.5.")
        key, value = item.split("=", 1)
        try:
            params[key.strip()] = float(value)
        except ValueError:
            params[key.strip()] = value.strip()
    return params


def _audio_changes(args: argparse.Namespace) -> dict[str, Any]:
    """The audio settings `autovoice live` was given (the rest stay as saved)."""
    pairs = (("sample_rate", args.samplerate), ("block_ms", args.block_ms), ("crossfade_ms", args.crossfade_ms),
             ("prefill_ms", args.prefill_ms), ("adaptive_buffer", args.adaptive_buffer),
             ("realtime_priority", args.realtime_priority))
    return {key: value for key, value in pairs if value is not None}


def _chain_changes(args: argparse.Namespace) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if getattr(args, "gate", None) is not None:
        changes["gate_threshold_db"] = args.gate
    if getattr(args, "input_gain", None) is not None:
        changes["input_gain_db"] = args.input_gain
    if getattr(args, "output_gain", None) is not None:
        changes["output_gain_db"] = args.output_gain
    if getattr(args, "bypass", False):
        changes["bypass"] = True
    return changes


# ---------------------------------------------------------------------- commands
def cmd_devices(args: argparse.Namespace) -> int:
    devs = api.list_devices()
    if args.json:
        print(json.dumps([d.to_dict() for d in devs], indent=2))
        return 0
    if not devs:
        print("No audio devices found (no sound card or sound server). File conversion still works.")
        return 0
    print(f"{'#':>3}  {'in':>3} {'out':>3}  {'rate':>6}  name (host API)")
    for d in devs:
        mark = ("<" if d.is_default_input else " ") + (">" if d.is_default_output else " ")
        print(f"{d.index:>3}{mark}{d.max_input_channels:>3} {d.max_output_channels:>3}  "
              f"{d.default_samplerate:>6.0f}  {d.label}")
    print("\n< default input, > default output. Pass a number or part of a name to --input/--output.")
    return 0


def cmd_voices(args: argparse.Namespace) -> int:
    if args.voices_command == "import":
        info = api.import_voice(args.model, index=args.index, name=args.name)
        print(f"Installed voice '{info.name}'. Use it with: autovoice live --voice \"{info.name}\"")
        return 0
    if args.voices_command == "remove":
        api.remove_voice(args.name)
        print(f"Removed voice '{args.name}'.")
        return 0
    voices = api.list_voices()
    if args.json:
        print(json.dumps([
            {"name": v.name, "kind": v.kind, "description": v.description, "path": v.path,
             "params": [s.to_dict() for s in v.params]} for v in voices], indent=2))
        return 0
    width = max(len(v.name) for v in voices)
    for v in voices:
        print(f"{v.name:<{width}}  {v.kind:<8} {v.description}")
    return 0


def _make_engine(autosave: bool) -> api.Engine:
    engine = api.Engine(load_default_voice=False, autosave=autosave)
    _allow_interrupts()  # the sound libraries it started may have blocked them on this thread
    if engine.settings_warning:
        print(f"warning: {engine.settings_warning}", file=sys.stderr)
    return engine


def cmd_convert(args: argparse.Namespace) -> int:
    # A one-off run: the voice, its values and the chain given here apply to these files only and
    # never change what the app or `autovoice live` restore next time.
    engine = _make_engine(autosave=False)
    try:
        if args.device:
            engine.set_compute_device(args.device)
        inputs = [Path(p) for p in args.inputs]
        out = Path(args.output)
        bars: dict[int, Any] = {}
        tqdm = None
        if not args.quiet:
            from tqdm import tqdm  # noqa: F811

        def progress(i: int, frac: float) -> None:
            if tqdm is None:
                return
            if i not in bars:
                for b in bars.values():
                    b.close()
                bars.clear()
                bars[i] = tqdm(total=100, desc=inputs[i].name[:30], unit="%", leave=True,
                               bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}")
            b = bars[i]
            b.update(int(frac * 100) - b.n)

        cancel = threading.Event()
        fut = engine.convert_files(inputs, out, voice=args.voice, params=voice_params_from_args(args), progress=progress,
                                   cancel=cancel, chain=_chain_changes(args))
        try:
            results = fut.result()
        except KeyboardInterrupt:
            # Ctrl-C: stop at the next chunk; the file being written is discarded, finished ones stay.
            cancel.set()
            results = fut.result()
            for b in bars.values():
                b.close()
            done = [r for r in results if not isinstance(r, AutoVoiceError)]
            print(f"autovoice: cancelled; {len(done)} finished file(s) kept, nothing partial written.", file=sys.stderr)
            return 130
        for b in bars.values():
            b.close()
        failed = 0
        for r in results:
            if isinstance(r, AutoVoiceError):
                failed += 1
                print(f"autovoice: error: {r}", file=sys.stderr)
            else:
                if r.note:
                    print(f"autovoice: warning: {r.note}", file=sys.stderr)
                print(f"{r.output_path}  ({r.duration_s:.1f} s audio in {r.elapsed_s:.1f} s, "
                      f"{1 / max(r.realtime_factor, 1e-9):.0f}x real time)")
        return 1 if failed else 0
    finally:
        engine.close()


# ---------------------------------------------------------------------- `autovoice song` (issue 9)
# One self-contained block: the subparser and the command, calling only engine.api.
def _add_song_parser(sub) -> None:
    p = sub.add_parser("song", help="song covers: separate the vocals, convert them with a voice, mix them back",
                       description="Separate each song's vocals, convert them with a voice and mix them back "
                                   "(same length, rate and channels as the song).")
    p.add_argument("inputs", nargs="*", metavar="SONG", help="song files, or folders of them")
    p.add_argument("-o", "--output", help="output file, or a folder for several songs")
    p.add_argument("--voice", help="voice name (see 'autovoice voices'); default: the last one used")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="a voice setting, e.g. --param index_rate=0.5 (repeatable)")
    p.add_argument("--transpose", type=float, default=0.0, metavar="N",
                   help="move the vocals only, in semitones (multiples of 12 keep the song's key)")
    p.add_argument("--key", type=float, default=0.0, metavar="N",
                   help="move the whole song, accompaniment included, in semitones (-12..12)")
    p.add_argument("--vocals-db", type=float, default=0.0, metavar="G",
                   help="vocal level in dB relative to the original vocals' loudness")
    p.add_argument("--accomp-db", type=float, default=0.0, metavar="G", help="accompaniment level change in dB")
    p.add_argument("--stems", metavar="DIR", help="also write the separated vocals, the converted vocals and the "
                                                  "accompaniment into DIR")
    p.add_argument("--separator", default="auto", choices=("auto", "htdemucs", "stereo"),
                   help="htdemucs (best; needs its model file), stereo (no download; stereo songs only) or auto "
                        "(htdemucs when installed; default)")
    p.add_argument("--no-cache", action="store_true", help="separate again even if the stems are cached")
    p.add_argument("--max-minutes", type=float, default=20.0, metavar="MIN", help="longest song accepted (default 20)")
    p.add_argument("--fetch-model", action="store_true",
                   help="download the htdemucs model into the models folder (once, SHA-256 checked) and exit")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    _add_device_option(p)


def _cmd_song(args: argparse.Namespace) -> int:
    STAGES, SongOptions = api.SONG_STAGES, api.SongOptions
    # A one-off run, like convert: what is given here never changes the saved settings.
    engine = _make_engine(autosave=False)
    try:
        if args.device:
            engine.set_compute_device(args.device)
        if args.fetch_model:
            last = [-1]

            def fetched(done: int, total: int | None) -> None:
                pct = int(100 * done / total) if total else -1
                if pct != last[0] and not args.quiet:
                    last[0] = pct
                    shown = f"{pct:3d}% of {total / 1e6:.0f} MB" if total else f"{done / 1e6:.0f} MB"
                    print(f"\rdownloading the htdemucs model: {shown}", end="", file=sys.stderr, flush=True)

            path = engine.fetch_separation_model(progress=fetched)
            print(f"\nThe htdemucs model is installed at {path}.", file=sys.stderr)
            if not args.inputs:
                return 0
        if not args.inputs:
            raise AutoVoiceError("Give at least one song (or a folder of songs), e.g. autovoice song song.mp3 -o cover.wav.")
        if not args.output:
            raise AutoVoiceError("Say where the cover goes with -o (a file, or a folder for several songs).")
        options = SongOptions(transpose_st=args.transpose, key_st=args.key, vocals_db=args.vocals_db,
                              accomp_db=args.accomp_db, separator=args.separator, stems_dir=args.stems,
                              max_duration_s=args.max_minutes * 60.0, use_cache=not args.no_cache).validated()
        name = args.voice or engine.settings.voice
        tty = sys.stderr.isatty()
        shown_notes: set[str] = set(engine.song_notes(options))
        for note in engine.song_notes(options):
            print(f"warning: {note}", file=sys.stderr)
        songs: list[str] = []
        last_line = [""]

        def progress(i: int, p) -> None:
            if args.quiet:
                return
            eta = f", {p.eta_s:.0f} s left" if p.eta_s is not None else ""
            cached = " (cached)" if p.cached else ""
            line = (f"song {i + 1}: {p.stage}{cached} [{p.index + 1}/{len(STAGES)}] {100 * p.fraction:3.0f}%{eta}")
            if tty:
                print("\r" + line.ljust(70), end="", file=sys.stderr, flush=True)
            elif p.fraction in (0.0, 1.0) and line != last_line[0]:
                print(line, file=sys.stderr, flush=True)
            last_line[0] = line

        def on_result(i: int, r) -> None:
            if tty and not args.quiet:
                print("\r" + " " * 70 + "\r", end="", file=sys.stderr)
            if isinstance(r, AutoVoiceError):
                print(f"autovoice: error: {r}", file=sys.stderr, flush=True)
                return
            for w in r.warnings:
                if w not in shown_notes:
                    shown_notes.add(w)
                    print(f"warning: {w}", file=sys.stderr)
            stages = ", ".join(f"{k} {v:.1f} s" for k, v in r.stage_seconds.items())
            print(f"{r.output_path}  ({r.duration_s:.1f} s song, {r.separator} stems"
                  f"{' from the cache' if r.cache_hit else ''}; {stages})", flush=True)
            for label, path in r.stems.items():
                print(f"  {label}: {path}")
            songs.append(r.output_path)

        cancel = threading.Event()
        fut = engine.convert_songs([Path(p) for p in args.inputs], Path(args.output), voice=name,
                                   params=voice_params_from_args(argparse.Namespace(param=args.param)), options=options,
                                   progress=progress, cancel=cancel, on_result=on_result)
        try:
            results = fut.result()
        except KeyboardInterrupt:
            # Ctrl-C: the song in progress stops at its next check and writes nothing; finished ones stay.
            cancel.set()
            try:
                fut.result()
            except KeyboardInterrupt:
                pass
            print(f"\nautovoice: cancelled; {len(songs)} finished song(s) kept, nothing partial written.",
                  file=sys.stderr)
            return 130
        failed = sum(isinstance(r, AutoVoiceError) for r in results)
        if len(results) > 1:
            print(f"{len(results) - failed} of {len(results)} songs converted.", file=sys.stderr)
        return 1 if failed else 0
    finally:
        engine.close()


def _readout(s) -> str:
    warn = "  LATE! " + s.suggestion if s.suggestion else ("  TIP: " + s.voice_hint if s.voice_hint else "")
    grown = f", {s.buffer_growth_ms:.1f} grown after underflows" if s.buffer_growth_ms > 0.05 else ""
    if s.buffer_note:
        grown += f", {s.buffer_note}"
    return (
        f"in {s.input_level_db:6.1f} dB | out {s.output_level_db:6.1f} dB | latency {s.total_latency_ms:5.1f} ms "
        f"(algo {s.algorithmic_latency_ms:.1f} + buffer {s.buffer_latency_ms:.1f}{grown} + device {s.device_latency_ms:.1f}) | "
        f"compute {s.compute_ms_mean:.2f}/{s.compute_ms_p99:.2f} ms of {s.block_ms:.0f} | "
        f"underflows {s.output_underflows} overflows {s.input_overflows} late {s.late_blocks}{warn}"
    )


def cmd_live(args: argparse.Namespace) -> int:
    # A live session is remembered, as in the app: devices, voice, its values and the chain.
    engine = _make_engine(autosave=True)
    if args.device:
        engine.set_compute_device(args.device)
    engine.load_voice(args.voice or engine.settings.voice, voice_params_from_args(args)).result()
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        changes = _chain_changes(args)
        if changes:
            engine.set_chain(**changes)
        engine.start(args.input, args.output, args.monitor, **_audio_changes(args))
        if args.timeline:
            engine.record_timeline(seconds=args.seconds or 3600.0)
        s = engine.snapshot()
        print(f"Converting {s.input_device} -> {s.output_device}"
              + (f" (+ monitor {s.monitor_device})" if s.monitor_device else "")
              + f" at {s.sample_rate} Hz with voice '{s.voice_name}'. Ctrl-C stops.", file=sys.stderr)
        if s.worker_priority != "realtime" and s.worker_priority_detail:
            print(f"Conversion thread priority: {s.worker_priority_detail}.", file=sys.stderr)
        if s.audio_callback_detail:
            print(f"Audio callback: Python, because {s.audio_callback_detail}.", file=sys.stderr)
        tty = sys.stderr.isatty()
        deadline = time.monotonic() + args.seconds if args.seconds else None
        last_print = 0.0
        while not stop.is_set():
            if deadline and time.monotonic() >= deadline:
                break
            if not engine.running:
                print(f"\nautovoice: error: {engine.last_error}", file=sys.stderr)
                _write_session_files(engine, args)  # what was measured up to the failure
                return 1
            now = time.monotonic()
            if now - last_print >= (0.25 if tty else 1.0):
                line = _readout(engine.snapshot())
                print(("\r" + line[:220]) if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)
                last_print = now
            stop.wait(0.05)
        final = engine.snapshot()
        if tty:
            print(file=sys.stderr)
        print(_readout(final), file=sys.stderr)
        _write_session_files(engine, args)
        return 0
    finally:
        engine.close()


def _write_session_files(engine, args: argparse.Namespace) -> None:
    """The snapshot (`--stats-json`) and per-block timeline (`--timeline`) of a live session."""
    if args.stats_json:
        Path(args.stats_json).write_text(json.dumps(engine.snapshot().to_dict(), indent=2))
    if args.timeline:
        import numpy as np

        np.savez_compressed(args.timeline, **engine.timeline())


def cmd_export_onnx(args: argparse.Namespace) -> int:
    dst, diff = api.export_onnx(args.model, args.output)
    print(f"Wrote {dst} (RVC ONNX contract). Largest difference from the .pth model on a test input: {diff:.1e} "
          f"(full scale 1.0).")
    return 0


COMMANDS = {"devices": cmd_devices, "voices": cmd_voices, "live": cmd_live, "convert": cmd_convert,
            "export-onnx": cmd_export_onnx, "song": _cmd_song}


def run(args: argparse.Namespace) -> int:
    """Run one of the terminal commands (see COMMANDS)."""
    _allow_interrupts()
    return COMMANDS[args.command](args)


def _allow_interrupts() -> None:
    """Unblock SIGINT and SIGTERM on the main thread: a process that starts us may have them blocked
    (a sound library blocks signals on its thread, and a child inherits that), and so may the
    libraries the engine loads. Ctrl-C and a service manager's stop must arrive."""
    if hasattr(signal, "pthread_sigmask") and threading.current_thread() is threading.main_thread():
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})


def setup_logging(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


def _exit_code(code: int) -> int:
    if api.portaudio_wedged():
        # A vanished device left PortAudio stuck; its exit handler would hang the process forever.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def guarded(fn: Callable[[], int], args: argparse.Namespace) -> int:
    """Run a command: its exit status, or one sentence on stderr for what went wrong."""
    try:
        return _exit_code(fn())
    except AutoVoiceError as exc:
        print(f"autovoice: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - last line of defence: one sentence, not a traceback
        if args.debug or os.environ.get("AUTOVOICE_DEBUG"):
            raise
        print(f"autovoice: unexpected error: {type(exc).__name__}: {exc} (run with --debug for details "
              "and please report it)", file=sys.stderr)
        return 1
