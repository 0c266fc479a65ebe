"""``python -m takhin_ws`` as a process: startup line, SIGTERM shutdown with 1001, exit
codes (0 after a signal, 1 when the port is taken, 2 for a bad flag or variable), --help.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from functools import partial

import pytest
import trio
from trio_websocket import ConnectionClosed, wrap_client_stream

from clients import recv_json, websockets_close_code
from takhin_ws._cli import ENV_PREFIX, main, parse_args

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
        await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
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
        (["--interval", "-1"], {}, "interval must be > 0"),
        (["--interval", "nan"], {}, "argument --interval: expected a finite number"),
        (["--log-format", "xml"], {}, "argument --log-format: invalid choice: 'xml'"),
        (["--port", "70000"], {}, "port must be between 0 and 65535"),
        (["--no-such-flag"], {}, "unrecognized arguments: --no-such-flag"),
        ([], {"TAKHIN_WS_MAX_CLIENTS": "x"}, "TAKHIN_WS_MAX_CLIENTS: expected an integer"),
        ([], {"TAKHIN_WS_PING_TIMEOUT": "soon"}, "TAKHIN_WS_PING_TIMEOUT: expected a number"),
        ([], {"TAKHIN_WS_INTERVAL": "0"}, "interval must be > 0"),
    ],
)
def test_a_bad_value_exits_2_with_one_readable_line(
    args: list[str], env: dict[str, str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        parse_args(args, env=env)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert len(lines(err.encode())) == 1, err
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
    for flag in required:
        assert flag in flags
    for flag in flags:
        variable = ENV_PREFIX + flag[2:].replace("-", "_").upper()
        assert f"[env {variable}]" in text, flag
    assert "TAKHIN_WS_<FLAG>" in text


def test_the_flags_of_this_wave_with_their_variables() -> None:
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
            "--kafka-config sasl.password: environment variable 'NOPE' is not set",
        ),
        ([], {"TAKHIN_WS_KAFKA_CONFIG": "s3cret"}, "TAKHIN_WS_KAFKA_CONFIG: expected KEY=VALUE"),
        (["--format", "xml"], {}, "argument --format: invalid choice: 'xml'"),
        ([], {"TAKHIN_WS_FORMAT": "xml"}, "TAKHIN_WS_FORMAT: invalid choice: 'xml'"),
    ],
)
def test_bad_kafka_config_and_format(
    args: list[str], env: dict[str, str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        parse_args(args, env=env)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert len(lines(err.encode())) == 1, err
    assert expected in err
    assert "s3cret" not in err
