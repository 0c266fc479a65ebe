"""``python -m takhin_ws`` as a process: startup line, SIGTERM shutdown with 1001, exit
codes (0 after a signal, 1 when the port is taken, 2 for a bad flag or variable, one line
naming the flag and its variable), --help, --version, flags and variables, logging.
"""

from __future__ import annotations

import gc
import logging
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path

import orjson
import pytest
import trio
from trio_websocket import ConnectionClosed, wrap_client_stream

import takhin_ws
import takhin_ws.config.settings as config
from clients import recv_json, websockets_close_code
from takhin_ws.config.checks import show
from takhin_ws.config.cli import (
    ENV_PREFIX,
    FULL_COLLECTION_EVERY,
    JsonFormatter,
    configure_logging,
    freeze_startup,
    main,
    parse_args,
    program_name,
)
from takhin_ws.config.options import OPTIONS

pytestmark = pytest.mark.slow

SERVING = re.compile(r"takhin-ws serving (http://127\.0\.0\.1:(\d+)/) \(WebSocket (\S+)\)")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env.update(extra)
    return env


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "takhin_ws", *args]


async def run(args: Sequence[str], **env: str) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(30):
        return await trio.run_process(
            command(*args),
            env=clean_env(**env),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )


def lines(output: bytes) -> list[str]:
    return [line for line in output.decode().splitlines() if line.strip()]


def refused_in_one_line(
    args: list[str], env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> str:
    """What `parse_args` printed when it refused *args* and *env*: exit 2, one line."""
    with pytest.raises(SystemExit) as info:
        parse_args(args, env=env)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert len(lines(err.encode())) == 1, err
    return err


async def test_sigterm_closes_every_client_with_1001_and_exits_0() -> None:
    stderr = bytearray()
    codes: list[tuple[int, str | None]] = []

    async def websockets_client(url: str) -> None:
        codes.append(await websockets_close_code(url))

    args = ("--port", "0", "--interval", "0.2", "--shutdown-timeout", "5", "--log-level", "info")
    async with trio.open_nursery() as nursery:
        process: trio.Process = await nursery.start(
            partial(
                trio.run_process,
                command(*args),
                env=clean_env(),
                stderr=subprocess.PIPE,
                check=False,
            )
        )
        assert process.stderr is not None
        with trio.fail_after(20):
            while not (match := SERVING.search(stderr.decode())):
                chunk = await process.stderr.receive_some()
                assert chunk, f"exited before serving: {stderr.decode()}"
                stderr += chunk
        port = int(match.group(2))
        assert match.group(3) == f"ws://127.0.0.1:{port}/api/monitoring/ws"

        async def drain() -> None:
            assert process.stderr is not None
            while chunk := await process.stderr.receive_some():
                stderr.extend(chunk)

        nursery.start_soon(drain)
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            ws = await wrap_client_stream(
                nursery, stream, f"127.0.0.1:{port}", "/api/monitoring/ws"
            )
            welcome = await recv_json(ws)
            assert welcome["type"] == "welcome"
            nursery.start_soon(websockets_client, match.group(3))
            # both are registered once /metrics counts them
            with trio.fail_after(20):
                while b"takhin_ws_clients 2.0" not in await _get(port, "/metrics"):
                    await trio.sleep(0.05)

            process.send_signal(signal.SIGTERM)
            reason = None
            with trio.fail_after(20):
                try:
                    while True:
                        await ws.get_message()  # snapshots until the Close frame
                except ConnectionClosed as exc:
                    reason = exc.reason
            assert reason is not None
            assert (reason.code, reason.reason) == (1001, "server shutting down")
            with trio.fail_after(20):  # a hang guard; the process bounds itself to 5 s
                returncode = await process.wait()
    assert returncode == 0
    assert codes == [(1001, "server shutting down")]
    text = stderr.decode()
    assert "received SIGTERM; shutting down" in text
    assert "Traceback" not in text
    print(text)


async def _get(port: int, path: str) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        out = bytearray()
        while data := await stream.receive_some():
            out += data
        return bytes(out)


async def test_port_in_use_exits_1_with_one_clear_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = await run(["--port", str(port)])
    assert result.returncode == 1
    assert lines(result.stderr) == [
        f"takhin-ws: error: cannot listen on 127.0.0.1:{port}: address already in use"
    ]


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--port", "abc"], {}, "argument --port: expected an integer, got 'abc'"),
        (["--interval", "-1"], {}, "--interval (TAKHIN_WS_INTERVAL) must be > 0, got -1"),
        (["--interval", "nan"], {}, "--interval (TAKHIN_WS_INTERVAL) must be a finite number"),
        (["--log-format", "xml"], {}, "argument --log-format: invalid choice: 'xml'"),
        (["--port", "70000"], {}, "--port (TAKHIN_WS_PORT) must be <= 65535, got 70000"),
        (["--no-such-flag"], {}, "unrecognized arguments: --no-such-flag"),
        ([], {"TAKHIN_WS_MAX_CLIENTS": "x"}, "TAKHIN_WS_MAX_CLIENTS: expected an integer"),
        ([], {"TAKHIN_WS_PING_TIMEOUT": "soon"}, "TAKHIN_WS_PING_TIMEOUT: expected a number"),
        ([], {"TAKHIN_WS_INTERVAL": "0"}, "--interval (TAKHIN_WS_INTERVAL) must be > 0, got 0"),
    ],
)
def test_a_bad_value_exits_2_with_one_readable_line(
    args: list[str], env: dict[str, str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    err = refused_in_one_line(args, env, capsys)
    assert err.startswith("python -m takhin_ws: error: ")
    assert expected in err
    assert "Traceback" not in err


async def test_a_bad_value_exits_2_from_the_real_process() -> None:
    result = await run(["--port", "abc"])
    assert result.returncode == 2
    assert len(lines(result.stderr)) == 1
    result = await run([], TAKHIN_WS_MAX_CLIENTS="x")
    assert result.returncode == 2
    assert lines(result.stderr) == [
        "python -m takhin_ws: error: TAKHIN_WS_MAX_CLIENTS: expected an integer, got 'x'"
    ]


def test_environment_and_flags() -> None:
    env = {
        "TAKHIN_WS_PORT": "9000",
        "TAKHIN_WS_MAX_CLIENTS": "7",
        "TAKHIN_WS_API_KEY": "a, b",
        "TAKHIN_WS_ALLOWED_ORIGIN": "https://x.example",
        "TAKHIN_WS_COLLECT_TIMEOUT": "off",
    }
    settings = parse_args(["--port", "9001", "--api-key", "c"], env=env)
    assert settings.port == 9001  # flags win
    assert settings.max_clients == 7
    assert settings.api_keys == ("a", "b", "c")  # repeatable, comma lists
    assert settings.allowed_origins == ("https://x.example",)
    assert settings.collect_timeout is None
    assert parse_args([], env={}).port == 8080


def test_help_documents_every_flag_and_its_variable(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # undo line wrapping
    required = [
        "--host",
        "--port",
        "--interval",
        "--source",
        "--max-clients",
        "--api-key",
        "--allowed-origin",
        "--log-level",
        "--log-format",
        "--shutdown-timeout",
        "--ping-interval",
        "--ping-timeout",
        "--write-timeout",
        "--max-message-size",
    ]
    flags = sorted(set(re.findall(r"(--[a-z][a-z-]+)", text)) - {"--help"})
    # a boolean's --no-X form shares the variable of --X
    flags = [f for f in flags if not (f.startswith("--no-") and "--" + f[5:] in flags)]
    flags.remove("--version")
    for flag in required:
        assert flag in flags
    for flag in flags:
        variable = ENV_PREFIX + flag[2:].replace("-", "_").upper()
        assert f"[env {variable}]" in text, flag
    assert "TAKHIN_WS_<FLAG>" in text
    # every variable works (the log flags' too: test_json_logs_of_the_real_process)
    assert "command line only" not in text


def test_the_flags_of_this_wave_with_their_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config, "has_module", lambda name: True)  # confluent_kafka
    settings = parse_args(
        [
            "--format",
            "bare",
            "--source",
            "kafka",
            "--kafka-bootstrap",
            "b1:9092,b2:9092",
            "--kafka-config",
            "sasl.mechanism=PLAIN",
            "--no-compression",
            "--show-internal-topics",
            "--scrape-max-bytes",
            "1000",
            "--compress-min-size",
            "64",
            "--max-channels",
            "9",
            "--command-rate",
            "2.5",
            "--command-burst",
            "3",
            "--body-timeout",
            "4",
            "--series-window",
            "60",
        ],
        env={},
    )
    assert settings.format == "bare"
    assert settings.source == "kafka"
    assert settings.kafka_bootstrap == "b1:9092,b2:9092"
    assert settings.kafka_config == (("sasl.mechanism", "PLAIN"),)
    assert (settings.compression, settings.show_internal_topics) == (False, True)
    assert settings.detect_changes is True
    assert (settings.scrape_max_bytes, settings.compress_min_size) == (1000, 64)
    assert (settings.max_channels, settings.command_rate, settings.command_burst) == (9, 2.5, 3)
    assert (settings.body_timeout, settings.series_window) == (4.0, 60.0)
    env = {
        "TAKHIN_WS_FORMAT": "bare",
        "TAKHIN_WS_MAX_CHANNELS": "5",
        "TAKHIN_WS_DETECT_CHANGES": "No",
        "TAKHIN_WS_COMPRESSION": "0",
        "TAKHIN_WS_SHOW_INTERNAL_TOPICS": "TRUE",
    }
    settings = parse_args([], env=env)
    assert (settings.format, settings.max_channels) == ("bare", 5)
    assert (settings.detect_changes, settings.compression) == (False, False)
    assert settings.show_internal_topics is True
    # the flag wins over the variable, both ways
    assert parse_args(["--detect-changes"], env=env).detect_changes is True
    assert parse_args(["--no-show-internal-topics"], env=env).show_internal_topics is False


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", True), ("1", True), ("yes", True), ("false", False), ("0", False), ("NO", False)],
)
def test_boolean_variables(value: str, expected: bool) -> None:
    assert parse_args([], env={"TAKHIN_WS_COMPRESSION": value}).compression is expected


def test_a_bad_boolean_variable_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parse_args([], env={"TAKHIN_WS_DETECT_CHANGES": "maybe"})
    assert info.value.code == 2
    assert capsys.readouterr().err == (
        "python -m takhin_ws: error: TAKHIN_WS_DETECT_CHANGES: "
        "expected true or false (1/0, yes/no), got 'maybe'\n"
    )


def test_kafka_config_from_the_environment_and_secrets_by_reference() -> None:
    env = {
        "TAKHIN_WS_KAFKA_CONFIG": "security.protocol=SASL_SSL\nssl.cipher.suites=A,B\n",
        "KAFKA_PASSWORD": "hunter2",
    }
    settings = parse_args(
        ["--kafka-config", "sasl.password=env:KAFKA_PASSWORD", "--kafka-config", "a=b=c"],
        env=env,
    )
    assert settings.kafka_config == (
        ("security.protocol", "SASL_SSL"),
        ("ssl.cipher.suites", "A,B"),  # one item per line keeps commas
        ("sasl.password", "hunter2"),
        ("a", "b=c"),
    )
    comma = parse_args([], env={"TAKHIN_WS_KAFKA_CONFIG": "x=1, y=2"})
    assert comma.kafka_config == (("x", "1"), ("y", "2"))
    # secrets never show in a repr (nor do keys)
    secret = parse_args(["--api-key", "k3y", "--publish-key", "p4b"], env=env)
    text = repr(secret)
    for value in ("hunter2", "SASL_SSL", "k3y", "p4b"):
        assert value not in text
    assert "('security.protocol', '***')" in text


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--kafka-config", "novalue"], {}, "argument --kafka-config: expected KEY=VALUE"),
        (["--kafka-config", "=s3cret"], {}, "argument --kafka-config: expected KEY=VALUE"),
        (
            ["--kafka-config", "sasl.password=env:NOPE"],
            {},
            "--kafka-config (TAKHIN_WS_KAFKA_CONFIG) sasl.password: environment variable 'NOPE' "
            "is not set",
        ),
        ([], {"TAKHIN_WS_KAFKA_CONFIG": "s3cret"}, "TAKHIN_WS_KAFKA_CONFIG: expected KEY=VALUE"),
        (["--format", "xml"], {}, "argument --format: invalid choice: 'xml'"),
        ([], {"TAKHIN_WS_FORMAT": "xml"}, "--format (TAKHIN_WS_FORMAT) must be one of envelope"),
    ],
)
def test_bad_kafka_config_and_format(
    args: list[str], env: dict[str, str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    err = refused_in_one_line(args, env, capsys)
    assert expected in err
    assert "s3cret" not in err


# Every bad setting of the adversarial run (issue 13, items 1 and 7): one line, exit 2,
# naming the flag and its variable.
BAD_SETTINGS = [
    (["--collect-timeout", "0"], {}, "--collect-timeout (TAKHIN_WS_COLLECT_TIMEOUT) must be > 0"),
    (["--unready-after", "0"], {}, "--unready-after (TAKHIN_WS_UNREADY_AFTER) must be >= 1"),
    (["--synthetic-topics", "-1"], {}, "--synthetic-topics (TAKHIN_WS_SYNTHETIC_TOPICS) must be"),
    (["--synthetic-topics", "10000000"], {}, "(TAKHIN_WS_SYNTHETIC_TOPICS) must be <= 10000"),
    (["--synthetic-groups", "-1"], {}, "--synthetic-groups (TAKHIN_WS_SYNTHETIC_GROUPS) must be"),
    (["--prometheus-url", "ftp://x/"], {}, "--prometheus-url (TAKHIN_WS_PROMETHEUS_URL) must"),
    (["--prometheus-url", "http://[::1"], {}, "(TAKHIN_WS_PROMETHEUS_URL) is not a valid URL"),
    (["--redis-url", "foo://bar"], {}, "--redis-url (TAKHIN_WS_REDIS_URL) must start with redis"),
    (["--redis-url", "127.0.0.1:6390"], {}, "--redis-url (TAKHIN_WS_REDIS_URL) needs a scheme"),
    (
        ["--ping-timeout", "1", "--ping-interval", "10"],
        {},
        "--ping-timeout (TAKHIN_WS_PING_TIMEOUT) must be greater than --ping-interval (10)",
    ),
    (["--history-ttl", "-1"], {}, "--history-ttl (TAKHIN_WS_HISTORY_TTL) must be >= 0, got -1"),
    (["--max-clients", "0"], {}, "--max-clients (TAKHIN_WS_MAX_CLIENTS) must be >= 1, got 0"),
    (["--queue-size", "100000000"], {}, "--queue-size (TAKHIN_WS_QUEUE_SIZE) must be <= 100000"),
    (["--history-size", "100000000"], {}, "(TAKHIN_WS_HISTORY_SIZE) must be <= 100000"),
    (["--max-channels", "0"], {}, "--max-channels (TAKHIN_WS_MAX_CHANNELS) must be >= 1"),
    (["--api-key", ""], {}, "--api-key (TAKHIN_WS_API_KEY) has an empty key"),
    ([], {"TAKHIN_WS_API_KEY": ",,"}, "--api-key (TAKHIN_WS_API_KEY) has an empty key"),
    ([], {"TAKHIN_WS_API_KEY": ""}, "--api-key (TAKHIN_WS_API_KEY) has an empty key"),
    (["--api-key", "a,"], {}, "--api-key (TAKHIN_WS_API_KEY) has an empty key"),
    (["--publish-key", ""], {}, "--publish-key (TAKHIN_WS_PUBLISH_KEY) has an empty key"),
    ([], {"TAKHIN_WS_PUBLISH_KEY": " "}, "--publish-key (TAKHIN_WS_PUBLISH_KEY) has an empty"),
    (["--allowed-origin", "https://x.example/"], {}, "(TAKHIN_WS_ALLOWED_ORIGIN) entries must"),
    (["--source", "prometheus"], {}, "--prometheus-url (TAKHIN_WS_PROMETHEUS_URL) is required"),
    (["--source", "kafka"], {}, "--kafka-bootstrap (TAKHIN_WS_KAFKA_BOOTSTRAP) is required"),
    (["--scrape-max-bytes", "0"], {}, "--scrape-max-bytes (TAKHIN_WS_SCRAPE_MAX_BYTES) must be"),
    (["--command-rate", "0"], {}, "--command-rate (TAKHIN_WS_COMMAND_RATE) must be > 0"),
    ([], {"TAKHIN_WS_SERIES_WINDOW": "-5"}, "--series-window (TAKHIN_WS_SERIES_WINDOW) must be"),
    ([], {"TAKHIN_WS_SHUTDOWN_TIMEOUT": "-1"}, "(TAKHIN_WS_SHUTDOWN_TIMEOUT) must be >= 0"),
]


@pytest.mark.parametrize(("args", "env", "expected"), BAD_SETTINGS)
def test_every_bad_setting_exits_2_naming_its_flag_and_variable(
    args: list[str], env: dict[str, str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    err = refused_in_one_line(args, env, capsys)
    assert err.startswith("python -m takhin_ws: error: ")
    assert expected in err


def test_a_missing_extra_exits_2_with_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(config, "has_module", lambda name: False)
    with pytest.raises(SystemExit) as info:
        parse_args(["--source", "kafka", "--kafka-bootstrap", "localhost:9092"], env={})
    assert info.value.code == 2
    assert capsys.readouterr().err == (
        "python -m takhin_ws: error: --source (TAKHIN_WS_SOURCE) kafka needs the optional "
        "confluent_kafka package: pip install 'takhin-ws[kafka]' "
        "(in a checkout: .venv/bin/pip install -e '.[kafka]')\n"
    )


# What used to end in an ExceptionGroup traceback (exit 1), a node unready forever, an
# open server or 15 GB of memory, checked on the real process.
REAL_PROCESS_CASES = [
    (["--collect-timeout", "0"], {}, "--collect-timeout (TAKHIN_WS_COLLECT_TIMEOUT)"),
    (["--prometheus-url", "ftp://x/", "--source", "prometheus"], {}, "--prometheus-url"),
    (["--prometheus-url", "http://[::1", "--source", "prometheus"], {}, "not a valid URL"),
    (["--synthetic-topics", "10000000"], {}, "--synthetic-topics"),
    (["--redis-url", "foo://bar"], {}, "--redis-url (TAKHIN_WS_REDIS_URL)"),
    (["--ping-timeout", "1", "--ping-interval", "10"], {}, "--ping-timeout"),
    ([], {"TAKHIN_WS_API_KEY": ",,"}, "--api-key (TAKHIN_WS_API_KEY) has an empty key"),
    (["--publish-key", ""], {}, "--publish-key (TAKHIN_WS_PUBLISH_KEY) has an empty key"),
]


@pytest.mark.parametrize(("args", "env", "expected"), REAL_PROCESS_CASES)
async def test_bad_settings_exit_2_from_the_real_process(
    args: list[str], env: dict[str, str], expected: str
) -> None:
    result = await run(args, **env)
    assert result.returncode == 2, result.stderr.decode()
    (line,) = lines(result.stderr)
    assert line.startswith("python -m takhin_ws: error: ")
    assert expected in line


async def test_redis_url_without_coredis_installed_exits_2_from_the_real_process() -> None:
    hide = "import sys; sys.modules['coredis'] = None; from takhin_ws.config.cli import main; "
    with trio.fail_after(30):
        result = await trio.run_process(
            [sys.executable, "-c", hide + "sys.exit(main())", "--redis-url", "redis://x:1/0"],
            env=clean_env(),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert result.returncode == 2
    assert lines(result.stderr) == [
        "python -m takhin_ws: error: --redis-url (TAKHIN_WS_REDIS_URL) needs the optional "
        "coredis package: pip install 'takhin-ws[redis]' "
        "(in a checkout: .venv/bin/pip install -e '.[redis]')"
    ]


def test_the_defaults_parse_to_the_default_settings() -> None:
    assert parse_args([], env={}) == config.Settings()


def test_the_operations_table_lists_every_flag_with_its_variable_and_default() -> None:
    text = (Path(__file__).parent.parent / "docs" / "operations.md").read_text()
    rows = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`--"):
            rows[cells[0].strip("`")] = cells[1:]
    defaults = config.Settings()
    assert sorted(rows) == sorted(option.flag for option in OPTIONS)
    for option in OPTIONS:
        variable, default, _ = rows[option.flag]
        assert variable == f"`{option.variable}`", option.flag
        value = getattr(defaults, option.setting)
        if isinstance(value, bool):
            assert default == ("on" if value else "off"), option.flag
        elif value in (None, ()):
            assert default.startswith("none"), option.flag
        else:
            assert default == f"`{show(value) if not isinstance(value, str) else value}`"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parse_args(["--version"], env={})
    assert info.value.code == 0
    assert capsys.readouterr().out == f"python -m takhin_ws {takhin_ws.__version__}\n"


def test_the_program_calls_itself_by_the_name_it_was_started_with() -> None:
    assert program_name("/usr/local/bin/takhin-ws") == "takhin-ws"
    assert program_name("/src/takhin_ws/__main__.py") == "python -m takhin_ws"
    assert program_name("-c") == "python -m takhin_ws"


async def test_the_console_script_names_itself() -> None:
    script = Path(sys.executable).parent / "takhin-ws"
    if not script.exists():
        pytest.skip("the takhin-ws console script is not installed in this environment")
    with trio.fail_after(30):
        result = await trio.run_process(
            [str(script), "--max-clients", "0"],
            env=clean_env(),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert result.returncode == 2
    assert lines(result.stderr) == [
        "takhin-ws: error: --max-clients (TAKHIN_WS_MAX_CLIENTS) must be >= 1, got 0"
    ]


def test_log_level_and_choices_in_any_case() -> None:
    assert parse_args(["--log-level", "INFO"], env={}).log_level == "info"
    assert parse_args([], env={"TAKHIN_WS_LOG_LEVEL": "Debug"}).log_level == "debug"
    assert parse_args(["--format", "BARE"], env={}).format == "bare"
    assert parse_args(["--log-format", "JSON"], env={}).log_format == "json"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    levels = {name: logging.getLogger(name).level for name in ("httpx", "httpcore")}
    yield
    root.handlers[:], level = saved
    root.setLevel(level)
    for name, value in levels.items():
        logging.getLogger(name).setLevel(value)


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize(("level", "httpx_level"), [("info", "WARNING"), ("debug", "DEBUG")])
def test_per_request_lines_of_httpx_are_off_unless_debugging(level: str, httpx_level: str) -> None:
    configure_logging(level, "text")
    for name in ("httpx", "httpcore"):
        assert logging.getLevelName(logging.getLogger(name).getEffectiveLevel()) == httpx_level
    assert logging.getLogger("httpx").isEnabledFor(logging.INFO) is (level == "debug")


def test_json_logs_carry_the_fields_given_with_extra() -> None:
    record = logging.LogRecord(
        "takhin_ws.session", logging.INFO, "x.py", 1, "closed %s", ("c7",), None
    )
    record.__dict__.update(client_id="c7", remote="127.0.0.1:5555", code=1008, reason="abuse")
    entry = orjson.loads(JsonFormatter().format(record))
    assert entry == {
        "ts": round(record.created, 3),
        "level": "info",
        "logger": "takhin_ws.session",
        "message": "closed c7",
        "client_id": "c7",
        "remote": "127.0.0.1:5555",
        "code": 1008,
        "reason": "abuse",
    }
    record.__dict__["odd"] = object()  # not JSON: written as text, never a logging error
    assert "odd" in orjson.loads(JsonFormatter().format(record))


async def serving_log(*args: str, **env: str) -> bytes:
    """What ``python -m takhin_ws --port 0 *args`` logs from its start until it serves,
    then until SIGTERM ends it (exit 0)."""
    stderr = bytearray()
    async with trio.open_nursery() as nursery:
        process: trio.Process = await nursery.start(
            partial(
                trio.run_process,
                command("--port", "0", *args),
                env=clean_env(**env),
                stderr=subprocess.PIPE,
                check=False,
            )
        )
        assert process.stderr is not None
        with trio.fail_after(20):
            while b"takhin-ws serving" not in stderr:
                chunk = await process.stderr.receive_some()
                assert chunk, f"exited before serving: {stderr.decode()}"
                stderr += chunk
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(20):
            while chunk := await process.stderr.receive_some():
                stderr += chunk
            assert await process.wait() == 0
    return bytes(stderr)


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (("--log-format", "JSON", "--log-level", "INFO"), {}),
        # what --help says beside the flags: their variables work as well
        ((), {"TAKHIN_WS_LOG_FORMAT": "json", "TAKHIN_WS_LOG_LEVEL": "info"}),
    ],
    ids=["flags", "variables"],
)
async def test_json_logs_of_the_real_process(args: tuple[str, ...], env: dict[str, str]) -> None:
    stderr = await serving_log(*args, **env)
    entries = [orjson.loads(line) for line in lines(stderr)]  # every line is JSON
    serving = [e for e in entries if e["message"].startswith("takhin-ws serving")]
    assert len(serving) == 1
    assert {"ts", "level", "logger"} <= set(serving[0])
    assert serving[0]["level"] == "info"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((), "metrics source: synthetic, SIMULATED data (not a real cluster): SyntheticSource("),
        (
            ("--source", "prometheus", "--prometheus-url", "http://u:pw@127.0.0.1:9/metrics"),
            "metrics source: prometheus: PrometheusSource('http://***@127.0.0.1:9/metrics', ",
        ),
        (
            ("--source", "kafka", "--kafka-bootstrap", "127.0.0.1:9"),
            "metrics source: kafka: KafkaSource('127.0.0.1:9', ",
        ),
    ],
    ids=["synthetic", "prometheus", "kafka"],
)
async def test_the_start_says_what_the_source_is_before_anything_succeeds(
    args: tuple[str, ...], expected: str
) -> None:
    """A source that never answers (port 9) is named at start all the same, with the
    bus, before the serving line; a password in a URL is not."""
    text = (await serving_log("--interval", "3600", *args)).decode()
    head = text.split("takhin-ws serving", 1)[0]
    assert expected in head, text
    assert "events: in memory, this node only; this node collects the metrics" in head
    assert "pw" not in text


def test_what_the_process_holds_once_started_is_left_out_of_full_collections() -> None:
    gc.unfreeze()
    thresholds = gc.get_threshold()
    try:
        freeze_startup()
        assert gc.get_freeze_count() > 1000  # modules, classes... (the benchmark: the pauses)
        assert gc.get_threshold() == (*thresholds[:2], FULL_COLLECTION_EVERY)
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def test_the_readme_starts_with_the_two_commands_and_ci_runs_the_second() -> None:
    root = Path(__file__).parent.parent
    readme = (root / "README.md").read_text()
    first_block = readme.split("```sh\n", 1)[1].split("```", 1)[0]
    commands = [line for line in first_block.splitlines() if not line.startswith("#")]
    assert commands == ["make run", "make test"]
    ci = [line for line in (root / ".ci" / "run").read_text().splitlines() if line.strip()]
    assert ci[-1] == "make test"
    # `make run` needs only the run-time layer of the virtualenv (no test tools, no extras)
    makefile = (root / "Makefile").read_text()
    assert re.search(r"^run: \$\(RUN_STAMP\)$", makefile, re.MULTILINE)
    run_layer = makefile.split("$(RUN_STAMP): pyproject.toml\n", 1)[1].split("\n\n", 1)[0]
    assert "install -e .\n" in run_layer + "\n"
    assert "[" not in run_layer
