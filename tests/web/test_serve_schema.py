"""schemathesis against the OpenAPI schema of a real ``nnscratch serve`` (issue 17).

Cases generated from the schema (valid bodies, and bodies that break it) are sent to the
server; every answer must be no 5xx, a status code and content type the schema declares, and
a body that matches the declared response schema. The count of cases is printed (-s).
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
EXAMPLES = {"/api/predict": 150, "/api/models": 5, "/healthz": 5}


def _run(operation, mode, n: int, url: str, statuses: dict[int, int]) -> int:
    """Send ``n`` generated cases of ``operation``; returns how many were sent."""
    sent = 0

    @settings(max_examples=n, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case):
        nonlocal sent
        sent += 1
        response = case.call_and_validate(base_url=url, checks=CHECKS, timeout=30)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    run()
    return sent


def test_the_api_against_its_openapi_schema(server):
    schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
    counts: dict[str, int] = {}
    statuses: dict[int, int] = {}
    for path, n in EXAMPLES.items():
        method = "POST" if path == "/api/predict" else "GET"
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            if method == "GET" and mode is GenerationMode.NEGATIVE:
                continue   # nothing to break: no parameters, no body
            counts[f"{method} {path} {mode.value}"] = _run(schema[path][method], mode, n,
                                                            server.url, statuses)
    print(f"\nschemathesis: {sum(counts.values())} cases {counts}, status codes {statuses}")
    assert counts["POST /api/predict positive"] >= 50 and counts["POST /api/predict negative"] >= 50
    assert not any(code >= 500 for code in statuses)
    assert statuses.get(200, 0) >= 20   # valid bodies (pixels of the right size and range) answered
