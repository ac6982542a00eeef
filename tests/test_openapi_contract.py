"""Issue 13: the OpenAPI document tells the truth, checked by schemathesis against the live API.

Schemathesis reads ``/openapi.json``, generates requests from it (valid ones and invalid ones)
and checks every answer with ``--checks all``: no server error, no status the operation does
not document, a documented body for each, every schema-valid request accepted (or refused for
a documented reason: 401/403/404/409/429/503), every schema-invalid one refused.

The API runs on a database of its own (no Asterisk: nothing it answers needs one; a change
that would reach Asterisk is left for the reconciler), with the operator token and no rate
limit, so schemathesis's thousands of requests are neither throttled nor seen by other tests.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from conftest import API_TOKEN

from centrex.api.openapi import DEEPER_RULES
from centrex.config import Settings
from centrex.sandbox.postgres import free_port, scratch_database
from centrex.sandbox.processes import API_READY, ServiceProcess

pytestmark = pytest.mark.integration

#: Examples per operation and phase: enough to find what is undocumented, about a minute here.
MAX_EXAMPLES = int(os.environ.get("CENTREX_SCHEMATHESIS_EXAMPLES", "20"))
SEED = int(os.environ.get("CENTREX_SCHEMATHESIS_SEED", "13"))


def schemathesis_bin() -> Path:
    beside = Path(sys.executable).with_name("schemathesis")
    if beside.exists():
        return beside
    found = shutil.which("schemathesis")
    if found is None:
        pytest.fail("schemathesis is not installed: pip install -e '.[dev]'")
    return Path(found)


@pytest.fixture(scope="module")
async def contract_api(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    async with scratch_database(tmp_path_factory.mktemp("pg-contract")) as db:
        own = settings.model_copy(update={
            "database_url": db.url, "api_port": free_port(), "sip_port": free_port(),
            "ami_port": free_port(), "http_port": free_port(), "reconcile_interval_s": 3600,
            "api_rate_limit_per_s": 0,
        })  # fmt: skip
        service = ServiceProcess("api", own, tmp_path_factory.mktemp("contract-logs"))
        service.start_and_wait(API_READY)
        try:
            yield f"http://{own.api_host}:{own.api_port}"
        finally:
            service.stop()


#: What schemathesis expects of a schema-valid request (its default), and of any request.
ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]
NOT_A_SERVER_ERROR = ["2xx", "3xx", "4xx"]


def config_toml() -> str:
    """Schemathesis's defaults, except where the document says why: a schema-valid request
    may get the 400/422 of a rule DEEPER_RULES names (written into the operation's
    description), and /health/ready answers 503 here (no Asterisk), as documented."""
    blocks = []
    for (method, path), (statuses, _) in sorted(DEEPER_RULES.items()):
        expected = ACCEPTED + [str(s) for s in sorted(statuses)]
        blocks.append(
            f'[[operations]]\ninclude-name = "{method} {path}"\n'
            f"checks.positive_data_acceptance.expected-statuses = {expected!r}\n"
        )
    blocks.append(
        '[[operations]]\ninclude-name = "GET /health/ready"\n'
        f"checks.not_a_server_error.expected-statuses = {[*NOT_A_SERVER_ERROR, '503']!r}\n"
    )
    return "\n".join(blocks).replace("'", '"')


def run_schemathesis(base_url: str, report_dir: Path) -> subprocess.CompletedProcess[str]:
    config = report_dir / "schemathesis.toml"
    config.write_text(config_toml())
    # fmt: off
    command = [
        str(schemathesis_bin()), "--config-file", str(config), "run", f"{base_url}/openapi.json",
        "--checks", "all",
        # Not the stateful phase: its link inference feeds a null id of one response (a
        # token's customer_id) to the next request's path as "None", and reports the 422.
        "--phases", "examples,coverage,fuzzing",
        "--header", f"Authorization: Bearer {API_TOKEN}",
        "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED), "--workers", "1",
        "--request-timeout", "30", "--no-color",
        "--report", "junit", "--report-dir", str(report_dir),
    ]
    # fmt: on
    return subprocess.run(
        command,
        # Its cache of past failures (.schemathesis/) in the run's own directory, never the
        # repository's: each run starts from nothing.
        cwd=report_dir,
        capture_output=True,
        text=True,
        timeout=900,
    )


def failures_of(output: str) -> int:
    """The failure count of schemathesis's summary ("86 failures" or "1 failure"), 0 if none."""
    found = re.findall(r"(\d+) (?:failures?|unique failures?)\b", output)
    return int(found[-1]) if found else 0


# About 3,000 requests, about 2 minutes here. With no Asterisk behind this API, a trunk or line
# change's cache expiry fails at once (its AMI refused once, the node is known down: 348 s
# before, when each change waited for AMI to time out; docs/provisioning-realtime.md).
@pytest.mark.timeout(900)
def test_schemathesis_finds_nothing_the_document_does_not_say(contract_api, tmp_path):
    result = run_schemathesis(contract_api, tmp_path)
    output = result.stdout + result.stderr
    (tmp_path / "schemathesis.txt").write_text(output)
    summary = output[output.find("SUMMARY") :] if "SUMMARY" in output else output[-6000:]
    print(summary)
    assert result.returncode == 0 and failures_of(output) == 0, (
        f"schemathesis found {failures_of(output)} failures:\n{output[-20000:]}"
    )


def test_a_method_the_path_does_not_have_is_405_with_all_its_methods(contract_api):
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    with httpx.Client(base_url=contract_api, headers=headers, timeout=15) as api:
        options = api.options("/v1/tokens")  # GET and POST are two routes: both listed
        assert options.status_code == 405, options.text
        assert options.headers["allow"] == "GET, HEAD, POST"
        assert isinstance(options.json()["detail"], str)
        # Not PATCH /v1/lines/{line_id} with line_id "import" (a 422 about a UUID).
        patched = api.patch("/v1/lines/import", json={})
        assert (patched.status_code, patched.headers["allow"]) == (405, "POST")
        anonymous = httpx.delete(f"{contract_api}/v1/tokens")  # the token first, as ever
        assert anonymous.status_code == 401


def test_docs_metrics_and_health_stay_open(contract_api):
    for path in ("/docs", "/openapi.json", "/metrics", "/health/live"):
        assert httpx.get(f"{contract_api}{path}", timeout=15).status_code == 200, path
    document = httpx.get(f"{contract_api}/openapi.json", timeout=15).json()
    assert "Error" in document["components"]["schemas"]
