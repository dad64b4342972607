"""cuda_ops sits at the bottom of the import graph (api -> stream -> pipeline -> voices/dsp -> cuda_ops)
and imports Triton only when a kernel is asked for."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_cuda_ops_imports_nothing_from_the_engine():
    for path in sorted((ROOT / "cuda_ops").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n == "engine" or n.startswith("engine.") for n in names), (path.name, names)


def test_importing_cuda_ops_does_not_import_triton():
    code = "import sys, cuda_ops.knn, cuda_ops.nsf, cuda_ops.sola, cuda_ops.graphs; print('triton' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr[-2000:]
