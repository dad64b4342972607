"""A schema-driven fuzz run: every operation in the server's own /openapi.json, with data that fits
the schema and data that does not (schemathesis), against a real server on 127.0.0.1. The bar:
no 5xx at all, and every refusal is JSON {"error": "one sentence"}. Bounded by examples, not by
time: FUZZ_EXAMPLES per operation and generation mode (AUTOVOICE_FUZZ_EXAMPLES to run more).

Hypothesis drives the strategies schemathesis builds from the schema directly (its pytest plugin's
lazy fixture loader does not work with pytest 9)."""

from __future__ import annotations

import collections
import os

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is in the 'test' extra")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402

FUZZ_EXAMPLES = int(os.environ.get("AUTOVOICE_FUZZ_EXAMPLES", "150"))


def test_no_request_generated_from_the_schema_gets_a_5xx(server):
    schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
    schema.config.update(base_url=server.url)
    seen: collections.Counter = collections.Counter()
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck))
            def one(case) -> None:
                response = case.call(timeout=60)
                seen[f"{case.method} {case.path} {response.status_code}"] += 1
                problem = None
                if response.status_code >= 500:
                    problem = "a 5xx"
                elif response.status_code >= 400:
                    ctype = response.headers.get("content-type") or [""]  # schemathesis: a list per header
                    ok_json = (ctype if isinstance(ctype, str) else ctype[0]).startswith("application/json")
                    body = response.json() if ok_json else None
                    if not (isinstance(body, dict) and set(body) == {"error"} and str(body["error"]).endswith(".")):
                        problem = "a refusal that is not one JSON sentence"
                if problem:
                    failures.append(f"{case.method} {case.path} ({mode.value}) -> {response.status_code}, {problem}: "
                                    f"{response.text[:200]}")
                    raise AssertionError(failures[-1])  # lets hypothesis shrink it to the simplest case

            try:
                one()
            except AssertionError:
                pass  # collected in failures; keep fuzzing the other operations
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE, operation.label  # nothing to break in a GET without inputs
    total = sum(seen.values())
    server_errors = sum(n for key, n in seen.items() if key.rsplit(" ", 1)[1].startswith("5"))
    print(f"\nfuzz run: {total} cases over {len(operations)} operations, {server_errors} answered 5xx; "
          + ", ".join(f"{k}: {v}" for k, v in sorted(seen.items())))
    assert not failures, "\n".join(dict.fromkeys(failures))
    assert {"POST /api/v1/convert", "GET /api/v1/voices", "GET /health/ready"} <= {k.rsplit(" ", 1)[0] for k in seen}
    assert seen and server_errors == 0
    assert server.get("/health/live").status_code == 200
