"""Headless HTTP server (``autovoice serve``): probes, Prometheus metrics, file and stream conversion.

Imports FastAPI, uvicorn and prometheus-client (the ``server`` extra); never imports PySide6.
    app.py      routes and ``serve()``        guard.py    token, upload limits, admission
    convert.py  POST /api/v1/convert          stream.py   WebSocket /api/v1/stream
    voices.py   voices for requests           metrics.py  autovoice_* metrics
    config.py   limits and bind checks        system.py   memory, CPU, GPU facts
"""
