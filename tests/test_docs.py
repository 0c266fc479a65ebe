"""The documentation's examples run and print what the pages say; its links lead somewhere.

Every fenced block with a language in ``docs/*.md`` and ``README.md`` is an example.
:data:`EXAMPLES` names the test that runs each one, or why it is skipped; a block it
does not list fails :func:`test_every_example_is_run_or_skipped_with_a_reason`, so a
new example cannot go untested unnoticed. JSON blocks are all checked here (each parses;
each message decodes with the strict codec; each HTTP error body has the code of its
status). Shell examples run in ``test_docs_commands.py``, the HTTP API's in
``test_docs_http.py``, the browser client in ``test_docs_client.py``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from docs_examples import DOCS, ROOT, Block, block, blocks, clean_env, pages
from takhin_ws.net.http.routes import NOT_PUBLISHED, OUTCOME_UNKNOWN
from takhin_ws.protocol import decode
from takhin_ws.wire.http import error_code
from takhin_ws.wire.messages import ALL_TYPES

sys.path.insert(0, str(ROOT / "tools"))
from docs_text import anchors  # (tools/ is not a package)

_COMMANDS = "tests/test_docs_commands.py"
_HTTP = "tests/test_docs_http.py"
_ASGI = "tests/test_docs_asgi.py"
_CONSOLE = "tests/test_console_compat.py"
_CONSOLE_PROXY = "test_the_docs_proxy_serves_the_dashboard_and_takhin_ws_from_one_origin"

#: (page, language, text only that block holds) -> the tests that run it, or "skip: why".
EXAMPLES: dict[tuple[str, str, str], str] = {
    ("docs/embedding.md", "sh", "pip install 'takhin-ws[kafka]' quart-trio hypercorn"): (
        f"{_ASGI}::test_the_quart_trio_tutorial_prints_what_the_page_says"
    ),
    ("docs/embedding.md", "python", "TrioDispatcherMiddleware"): (
        f"{_ASGI}::test_the_quart_trio_tutorial_prints_what_the_page_says"
    ),
    ("docs/embedding.md", "sh", "TAKHIN_WS_SOURCE=kafka"): (
        f"{_ASGI}::test_the_quart_trio_tutorial_prints_what_the_page_says"
    ),
    ("docs/embedding.md", "python", "websockets.connect(url"): (
        f"{_ASGI}::test_the_quart_trio_tutorial_prints_what_the_page_says"
    ),
    ("docs/embedding.md", "text", "topic_created orders"): (
        f"{_ASGI}::test_the_quart_trio_tutorial_prints_what_the_page_says"
    ),
    ("docs/embedding.md", "python", "SessionMiddleware"): (
        f"{_ASGI}::test_the_starlette_how_to_serves_the_dashboard_under_live_in_chromium"
    ),
    ("docs/embedding.md", "sh", "CONSOLE_SECRET=change-me"): (
        f"{_ASGI}::test_the_starlette_how_to_serves_the_dashboard_under_live_in_chromium"
    ),
    ("README.md", "sh", "make test"): f"{_COMMANDS}::test_readme_the_first_command",
    ("README.md", "sh", "TAKHIN_WS_PORT=9000"): f"{_COMMANDS}::test_readme_another_port",
    ("docs/operations.md", "sh", "make run"): (
        f"{_COMMANDS}::test_operations_running_it_make_run "
        f"{_COMMANDS}::test_operations_running_it_make_run_on_another_port "
        f"{_COMMANDS}::test_operations_running_it_help_and_version"
    ),
    ("docs/operations.md", "sh", "--redis-url"): (
        f"{_COMMANDS}::test_operations_scaling_out_two_nodes_on_one_redis"
    ),
    ("docs/operations.md", "text", "shares the cluster's event streams"): (
        f"{_COMMANDS}::test_operations_scaling_out_two_nodes_on_one_redis"
    ),
    ("docs/operations.md", "nginx", "compares them"): (
        f"{_COMMANDS}::test_operations_nginx_proxies_the_websocket"
    ),
    ("docs/operations.md", "sh", "--format bare"): f"{_CONSOLE}::{_CONSOLE_PROXY}",
    (
        "docs/operations.md",
        "nginx",
        "location = /api/monitoring/ws",
    ): f"{_CONSOLE}::{_CONSOLE_PROXY}",
    ("docs/operations.md", "caddyfile", "@takhin_ws"): f"{_CONSOLE}::{_CONSOLE_PROXY}",
    ("docs/operations.md", "text", "error:"): (
        "tests/test_docs.py::test_the_bad_settings_lines_are_what_the_program_prints"
    ),
    ("docs/embedding.md", "python", "trio.run(main)"): (
        "tests/test_docs.py::test_embedding_example_prints_what_the_page_says"
    ),
    ("docs/embedding.md", "text", "connected as"): (
        "tests/test_docs.py::test_embedding_example_prints_what_the_page_says"
    ),
    ("docs/embedding.md", "python", "trio.run(console)"): (
        "tests/test_docs.py::test_serve_example_prints_what_the_page_says"
    ),
    ("docs/embedding.md", "python", "QueueSubscriber()"): (
        "tests/test_docs.py::test_sans_io_hub_example_runs"
    ),
    ("docs/embedding.md", "python", "except LocalProtocolError"): (
        "tests/test_docs.py::test_invalid_event_example_prints_what_the_page_says"
    ),
    ("docs/embedding.md", "python", "close_source(source)"): (
        "tests/test_docs.py::test_the_sources_example_prints_what_the_page_says"
    ),
    ("docs/embedding.md", "python", "decode(raw)"): (
        "tests/test_docs.py::test_the_decode_example_prints_what_the_page_says"
    ),
    ("docs/metrics.md", "python", "class MySource"): (
        "tests/test_docs.py::test_the_source_of_metrics_md_feeds_a_server"
    ),
    ("docs/http-api.md", "sh", "curl"): (
        f"{_HTTP}::test_the_curl_example_answers_and_a_client_receives_what_the_page_shows"
    ),
    ("docs/http-api.md", "json", '"failingSince"'): (
        f"{_HTTP}::test_the_readyz_of_a_source_that_never_worked_is_the_pages"
    ),
    ("docs/http-api.md", "sh", "--no-detect-changes"): (
        f"{_HTTP}::test_the_curl_example_answers_and_a_client_receives_what_the_page_shows "
        f"{_HTTP}::test_the_python_example_prints_what_the_page_shows"
    ),
    ("docs/http-api.md", "python", "httpx.post"): (
        f"{_HTTP}::test_the_python_example_prints_what_the_page_shows"
    ),
    ("docs/http-api.md", "text", "topic_created topics 1"): (
        f"{_HTTP}::test_the_python_example_prints_what_the_page_shows"
    ),
    ("docs/websocket-api.md", "js", "state.attempt"): (
        "tests/test_docs_client.py::test_the_docs_client_follows_a_new_epoch "
        "tests/test_docs_client.py::test_the_docs_client_asks_for_envelopes_from_a_bare_server "
        "tests/test_docs_client.py::test_the_docs_client_refetches_once_per_burst_of_gaps"
    ),
    ("docs/websocket-api.md", "js", "whyRefused"): (
        "tests/test_docs_client.py::test_the_docs_probe_tells_refusals_apart"
    ),
    ("docs/websocket-api.md", "js", "channels=metrics,topic:orders"): (
        "skip: a browser snippet for a remote host (wss://console.example.com); the"
        " subprotocol pair it offers is tested in tests/test_admission.py"
    ),
    ("docs/websocket-api.md", "js", "format=bare"): (
        "skip: a browser snippet for a remote host (wss://console.example.com); bare"
        " connections are tested in tests/test_wire.py"
    ),
    ("docs/websocket-api.md", "json", "<object, array or string>"): (
        "skip: the envelope's schema with placeholders, not JSON"
    ),
    ("docs/benchmarks.md", "sh", "python -m benchmarks --quick"): (
        "skip: installs the bench extra and runs benchmarks for minutes, which must not"
        " share the machine with the suite"
    ),
    ("docs/benchmarks.md", "sh", "--workloads burst steady --repeat 3"): (
        "skip: the before/after fan-out runs of the wire variants, minutes of benchmark"
        " that must not share the machine with the suite"
    ),
    ("docs/benchmarks.md", "sh", "--servers takhin-ws takhin-ws-asgi"): (
        "skip: minutes of fan-out benchmark through Hypercorn, which must not share the"
        " machine with the suite"
    ),
    ("docs/benchmarks.md", "sh", "python -m benchmarks.kafka_tick --topics 1000"): (
        "skip: builds a 12,000-partition Kafka broker and measures it for minutes, which"
        " must not share the machine with the suite"
    ),
    ("docs/benchmarks.md", "sh", "python -m benchmarks.kafka_tick --producer"): (
        "skip: builds a 12,000-partition Kafka broker and measures the server's whole"
        " tick over it for minutes, which must not share the machine with the suite"
    ),
    ("docs/benchmarks.md", "sh", "python -m benchmarks.kafka_metadata"): (
        "skip: measures a 12,000-partition Kafka broker set up beforehand, which must"
        " not share the machine with the suite"
    ),
    ("docs/operations.md", "sh", "--source kafka --kafka-bootstrap broker1:9092"): (
        "skip: needs a Kafka cluster at broker:9092 (with TLS and SASL);"
        " tests/test_kafka_server.py runs --source kafka against a real broker"
    ),
    ("docs/tokens.md", "python", "jwt.encode("): (
        "tests/test_docs_tokens.py::test_the_python_example_mints_a_token_the_server_accepts"
    ),
    ("docs/tokens.md", "sh", "openssl dgst -sha256 -hmac"): (
        "tests/test_docs_tokens.py::test_the_openssl_example_mints_a_token_the_server_accepts"
    ),
    ("docs/tokens.md", "sh", "--token-public-key old-public.pem"): (
        "tests/test_docs_tokens.py::test_the_rotation_example_keys_verify_old_and_new_tokens"
    ),
    ("docs/tokens.md", "json", '{"sub":"ann","exp"'): (
        "tests/test_docs_tokens.py::test_the_claim_example_is_a_claim"
    ),
    ("docs/tokens.md", "js", "token_expiring"): (
        "skip: a browser fragment (fetchToken and connect are the page's own); the"
        " dashboard's refresh and reconnect are tested in Chromium in"
        " tests/test_dashboard_tokens.py"
    ),
    ("docs/benchmarks.md", "sh", "--out /tmp/h26-bench-X"): (
        "skip: the before/after end-to-end fan-out runs of the token change, minutes of"
        " benchmark that must not share the machine with the suite"
    ),
    ("docs/benchmarks.md", "sh", "254bbc2 (before tokens)"): (
        "skip: the before/after in-process fan-out runs of the token change, minutes of"
        " benchmark that must not share the machine with the suite"
    ),
    ("docs/benchmarks.md", "sh", "python -m benchmarks.filtered"): (
        "skip: publishes big snapshots to 1,000 hub clients for a minute, which must not"
        " share the machine with the suite"
    ),
    ("docs/benchmarks.md", "sh", "python -m benchmarks.inbound --repeat 3"): (
        "skip: sends messages of up to 64 MiB to two servers for a minute, which must not"
        " share the machine with the suite"
    ),
    ("docs/benchmarks.md", "sh", "--servers takhin-ws --timeout 6000"): (
        "skip: the before run, in a worktree of an old commit (its 64 MiB message alone"
        " costs ten minutes of CPU)"
    ),
    ("docs/contributing.md", "sh", "pytest tests/test_autobahn.py"): (
        "tests/test_autobahn.py::test_autobahn_section"
    ),
    ("docs/benchmarks.md", "sh", "python -m benchmarks.lag_tick"): (
        "tests/test_benchmark_lag.py::"
        "test_the_lag_benchmark_runs_and_its_cluster_shows_every_kind_of_group"
    ),
    ("docs/benchmarks.md", "sh", "python -m benchmarks.publish_step"): (
        "tests/test_benchmark_publish.py::"
        "test_every_client_set_gets_one_message_per_client_and_publish"
    ),
    ("docs/benchmarks.md", "sh", "tick_step --sizes 1000x12x150 1000x12x300 --top 8"): (
        "tests/test_benchmark_tick.py::"
        "test_the_tick_benchmark_publishes_every_tick_to_every_client_and_names_its_steps"
    ),
    ("docs/benchmarks.md", "sh", "tick_step --sizes 1000x12x150 1000x12x300 --top 6"): (
        "tests/test_benchmark_tick.py::"
        "test_the_tick_benchmark_publishes_every_tick_to_every_client_and_names_its_steps"
    ),
    ("docs/benchmarks.md", "sh", "python -m benchmarks.hostile"): (
        "skip: the hostile-load scenarios run servers of 10,000 topics with hundreds of"
        " clients for twenty minutes, which must not share the machine with the suite"
    ),
    ("docs/benchmarks.md", "sh", "bench-h21"): (
        "skip: the before/after fan-out runs of issue 21, minutes of benchmark that must"
        " not share the machine with the suite"
    ),
    ("docs/benchmarks.md", "sh", '# see "Connections"'): (
        "skip: the connection-cost and reconnect-storm benchmarks, minutes of benchmark"
        " with 10,000 clients that must not share the machine with the suite"
    ),
    ("docs/benchmarks.md", "sh", "--servers takhin-ws websockets node-ws raw-floor"): (
        "skip: connects 1,000 and 10,000 clients to four servers three times, which must"
        " not share the machine with the suite (tests/test_connection_memory.py guards"
        " the memory per connection)"
    ),
    ("docs/benchmarks.md", "sh", "benchmarks.storm --clients 1000 10000 --servers"): (
        "skip: drops and reconnects 10,000 clients against two servers, which must not"
        " share the machine with the suite (tests/test_listener.py tests accepting in"
        " turns, tests/test_resume.py the resume)"
    ),
    ("docs/benchmarks.md", "sh", "# after, before, after, before"): (
        "skip: the before/after fan-out runs of issue 29, in a checkout of an old commit,"
        " minutes of benchmark that must not share the machine with the suite"
    ),
    ("docs/benchmarks.md", "sh", "# before, after, after, before"): (
        "skip: the before/after fan-out, micro and backlog runs of issue 25 (the outbound"
        " buffer), in exports of two commits, minutes of benchmark that must not share the"
        " machine with the suite (tests/test_outbuffer.py and tests/test_transport.py"
        " test the paths)"
    ),
    ("docs/benchmarks.md", "sh", "python -m benchmarks.cluster"): (
        "skip: serves brokers of up to 3,000 topics and runs the server for minutes,"
        " which must not share the machine with the suite"
    ),
}


def _entry(example: Block) -> tuple[tuple[str, str, str], str] | None:
    found = [
        (key, how)
        for key, how in EXAMPLES.items()
        if key[0] == example.page and key[1] == example.lang and key[2] in example.code
    ]
    assert len(found) <= 1, f"{example.page}:{example.line} matches {len(found)} entries"
    return found[0] if found else None


def _json_values(code: str) -> list[Any] | None:
    """The JSON of a block (one document, or one per line); ``None`` if it is not JSON."""
    try:
        return [orjson.loads(code)]
    except orjson.JSONDecodeError:
        pass
    try:
        return [orjson.loads(line) for line in code.splitlines() if line.strip()]
    except orjson.JSONDecodeError:
        return None


def test_every_example_is_run_or_skipped_with_a_reason() -> None:
    unknown = []
    for example in blocks():
        if not example.lang:
            continue  # diagrams, URLs and sample output
        entry = _entry(example)
        if entry is None and example.lang == "json" and _json_values(example.code):
            continue  # test_every_json_example_is_valid
        if entry is None:
            unknown.append(f"{example.page}:{example.line} ({example.lang})")
    assert not unknown, f"examples no test runs (add them to EXAMPLES): {unknown}"


def test_every_listed_example_exists_and_names_real_tests() -> None:
    examples = blocks()
    for (page, lang, snippet), how in EXAMPLES.items():
        matches = [b for b in examples if (b.page, b.lang) == (page, lang) and snippet in b.code]
        assert len(matches) == 1, f"{page} has {len(matches)} {lang} blocks with {snippet!r}"
        if how.startswith("skip: "):
            continue
        for test in how.split():
            path, name = test.split("::")
            assert re.search(rf"^(async )?def {name}\(", (ROOT / path).read_text(), re.M), test


def test_every_json_example_is_valid() -> None:
    """Messages decode strictly (unknown keys, wrong types and bad events are refused),
    HTTP error bodies carry the code of their status."""
    for example in blocks():
        if example.lang != "json" or _entry(example) is not None:
            continue
        values = _json_values(example.code)
        assert values, f"{example.page}:{example.line} is not JSON"
        for value in values:
            where = f"{example.page}:{example.line}"
            if "type" in value:
                decode(orjson.dumps(value), accept=ALL_TYPES)
            elif "error" in value:
                error = value["error"]
                base = {"status", "code", "message"}
                # a 503 of POST /api/events also says what was published (routes.py)
                extra = {"outcome", "accepted"} if error["status"] == 503 else set()
                # a 401 or 403 names its reason (core/access/auth)
                extra |= {"reason"} if error["status"] in (401, 403) else set()
                # a 413 of a batch names the setting (ingest/ingress.decode_events)
                extra |= {"setting", "limit", "events"} if error["status"] == 413 else set()
                assert base <= set(error) <= base | extra, where
                assert error["code"] == error_code(error["status"]), where
                if "outcome" in error:
                    assert error["outcome"] in {OUTCOME_UNKNOWN, NOT_PUBLISHED}, where
            elif "accepted" in value:
                for item in value["accepted"]:
                    assert set(item) == {"type", "channel", "offset", "epoch"}, where
            else:
                decode(orjson.dumps({"type": "metrics", "data": value}), accept=ALL_TYPES)


#: Links to a section another piece of work is still writing: link -> whose it is.
#: (Remove an entry once its section exists; the link is then checked like any other.)
PENDING_ANCHORS: dict[str, str] = {
    "benchmarks.md#cluster-size": "the cluster-size table of the big-cluster Prometheus work",
}


def _links(text: str) -> list[str]:
    body = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    body = re.sub(r"`[^`\n]*`", "", body)
    return re.findall(r"\]\(([^)\s]+)\)", body)


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_links_lead_to_existing_pages_and_headings(page: Path) -> None:
    for target in _links(page.read_text()):
        if re.match(r"[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        assert file.exists(), f"{page.name} links to missing {target}"
        if anchor and file.suffix == ".md" and target not in PENDING_ANCHORS:
            found = {a for _, _, a in anchors(file.read_text())}
            assert anchor in found, f"{page.name} links to {target}: no such heading"


def test_the_index_links_every_page() -> None:
    index = (DOCS / "README.md").read_text()
    linked = {link.partition("#")[0] for link in _links(index)}
    for page in DOCS.glob("*.md"):
        if page.name != "README.md":
            assert page.name in linked, f"docs/README.md does not link {page.name}"


# --- the Python examples ---


def _run(code: str, tmp_path: Path) -> str:
    script = tmp_path / "example.py"
    script.write_text(code)
    result = subprocess.run(
        [sys.executable, "-W", "error", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_embedding_example_prints_what_the_page_says(tmp_path: Path) -> None:
    code = block("docs/embedding.md", "python", "trio.run(main)")
    expected = block("docs/embedding.md", "text", "connected as")
    assert _run(code, tmp_path) == expected


def test_serve_example_prints_what_the_page_says(tmp_path: Path) -> None:
    out = _run(block("docs/embedding.md", "python", "trio.run(console)"), tmp_path).splitlines()
    assert out == ["welcome", "stopped: True"]
    assert "prints `welcome` and then `stopped: True`" in (DOCS / "embedding.md").read_text()


def test_sans_io_hub_example_runs(tmp_path: Path) -> None:
    out = _run(block("docs/embedding.md", "python", "QueueSubscriber()"), tmp_path)
    assert '"type":"topic_created"' in out
    assert '"offset":1' in out


def test_invalid_event_example_prints_what_the_page_says(tmp_path: Path) -> None:
    code = block("docs/embedding.md", "python", "except LocalProtocolError")
    out = _run(code, tmp_path).strip()
    assert f"prints `{out}`" in " ".join((DOCS / "embedding.md").read_text().split())


def _prints_what_the_page_says(snippet: str, tmp_path: Path) -> None:
    out = _run(block("docs/embedding.md", "python", snippet), tmp_path).strip()
    assert out
    assert f"prints `{out}`" in " ".join((DOCS / "embedding.md").read_text().split())


def test_the_sources_example_prints_what_the_page_says(tmp_path: Path) -> None:
    _prints_what_the_page_says("close_source(source)", tmp_path)


def test_the_decode_example_prints_what_the_page_says(tmp_path: Path) -> None:
    _prints_what_the_page_says("decode(raw)", tmp_path)


SOURCE_DRIVER = """
import json

import trio
from trio_websocket import open_websocket_url

from takhin_ws import Settings, open_server


async def main() -> None:
    async with open_server(Settings(port=0), source=MySource()) as server:
        async with open_websocket_url(server.ws_url + "?channels=metrics") as ws:
            with trio.fail_after(30):
                while (message := json.loads(await ws.get_message()))["type"] != "metrics":
                    pass
    print(message["data"]["clusterHealth"]["totalConsumers"], message["stale"])


trio.run(main)
"""


def test_the_source_of_metrics_md_feeds_a_server(tmp_path: Path) -> None:
    """The page's source, as written, behind a real server: a client gets its snapshot."""
    code = block("docs/metrics.md", "python", "class MySource")
    assert _run(code + SOURCE_DRIVER, tmp_path) == "1 False\n"


# --- the sample output of the command line ---

#: The arguments that make ``python -m takhin_ws`` print each line of the block, and
#: code run first (hiding an installed package).
BAD_SETTINGS = [
    (["--ping-interval", "10", "--ping-timeout", "1"], ""),
    (["--api-key", ""], ""),
    (["--redis-url", "redis://redis:6379/0"], "import sys; sys.modules['coredis'] = None; "),
]


def test_the_bad_settings_lines_are_what_the_program_prints() -> None:
    documented = block("docs/operations.md", "text", "error:").splitlines()
    assert len(documented) == len(BAD_SETTINGS)
    for (args, prelude), expected in zip(BAD_SETTINGS, documented, strict=True):
        program = prelude + "import runpy; runpy.run_module('takhin_ws', run_name='__main__')"
        result = subprocess.run(
            [sys.executable, "-c", program, *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=clean_env(),
            check=False,
        )
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().splitlines() == [expected]
