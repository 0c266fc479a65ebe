"""``Settings`` checks itself: ranges, choices, URLs, relations, optional extras, secrets in
``repr``; ``Settings.from_env``; ``_config`` stays a leaf. (Flags: ``test_cli.py``.)"""

from __future__ import annotations

import ast
import math
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

import takhin_ws
import takhin_ws.config.settings as config
from takhin_ws import Settings, SettingsError, TakhinWsError


def test_the_defaults_are_valid() -> None:
    settings = Settings()
    assert settings == Settings.from_env({})


@pytest.mark.parametrize(
    ("values", "setting", "problem"),
    [
        ({"port": 70000}, "port", "must be <= 65535, got 70000"),
        ({"port": -1}, "port", "must be >= 0, got -1"),
        ({"interval": 0}, "interval", "must be > 0, got 0"),
        ({"interval": math.nan}, "interval", "must be a finite number, got nan"),
        ({"interval": math.inf}, "interval", "must be a finite number, got inf"),
        ({"collect_timeout": 0.0}, "collect_timeout", "must be > 0, got 0"),
        ({"unready_after": 0}, "unready_after", "must be >= 1, got 0"),
        ({"synthetic_topics": -1}, "synthetic_topics", "must be >= 1, got -1"),
        ({"synthetic_topics": 0}, "synthetic_topics", "must be >= 1, got 0"),
        ({"synthetic_topics": 10_000_000}, "synthetic_topics", "must be <= 10000, got 10000000"),
        ({"synthetic_groups": -1}, "synthetic_groups", "must be >= 0, got -1"),
        ({"synthetic_groups": 10**6}, "synthetic_groups", "must be <= 10000"),
        ({"max_clients": 0}, "max_clients", "must be >= 1, got 0"),
        ({"queue_size": 0}, "queue_size", "must be >= 1, got 0"),
        ({"queue_size": 10**9}, "queue_size", "must be <= 100000"),
        ({"history_size": -1}, "history_size", "must be >= 0, got -1"),
        ({"history_size": 10**9}, "history_size", "must be <= 100000"),
        ({"history_ttl": -1.0}, "history_ttl", "must be >= 0, got -1"),
        ({"max_channels": 0}, "max_channels", "must be >= 1, got 0"),
        ({"max_channels": 10**6}, "max_channels", "must be <= 10000"),
        ({"max_message_size": 0}, "max_message_size", "must be >= 1"),
        ({"max_body_size": 2**40}, "max_body_size", "must be <= 67108864"),
        ({"scrape_max_bytes": 0}, "scrape_max_bytes", "must be >= 1"),
        ({"send_buffer_size": -1}, "send_buffer_size", "must be >= 0"),
        ({"shutdown_timeout": -1.0}, "shutdown_timeout", "must be >= 0"),
        ({"write_timeout": 0.0}, "write_timeout", "must be > 0"),
        ({"handshake_timeout": -2.0}, "handshake_timeout", "must be > 0"),
        ({"body_timeout": 0.0}, "body_timeout", "must be > 0"),
        ({"bad_message_limit": -1}, "bad_message_limit", "must be >= 0"),
        ({"bad_message_window": 0.0}, "bad_message_window", "must be > 0"),
        ({"retry_after": -1}, "retry_after", "must be >= 0"),
        ({"command_rate": 0.0}, "command_rate", "must be > 0"),
        ({"command_burst": 0}, "command_burst", "must be >= 1"),
        ({"compress_min_size": -1}, "compress_min_size", "must be >= 0"),
        ({"series_window": 0.0}, "series_window", "must be > 0"),
        ({"port": "8080"}, "port", "must be an integer, got '8080'"),
        ({"port": True}, "port", "must be an integer, got True"),
        ({"interval": "2"}, "interval", "must be a number, got '2'"),
        ({"compression": "yes"}, "compression", "must be True or False, got 'yes'"),
        ({"host": ""}, "host", "must not be empty"),
        ({"source": "kafak"}, "source", "must be one of synthetic, prometheus, kafka"),
        ({"format": "BARE"}, "format", "must be one of envelope, bare, got 'BARE'"),
        ({"log_level": "verbose"}, "log_level", "must be one of debug, info, warning, error"),
        ({"log_format": "xml"}, "log_format", "must be one of text, json"),
        ({"api_keys": ("",)}, "api_keys", "has an empty key"),
        ({"api_keys": ("k", " ")}, "api_keys", "has an empty key"),
        ({"publish_keys": ("",)}, "publish_keys", "has an empty key"),
        ({"api_keys": "k"}, "api_keys", "must be a tuple of strings, got str"),
        ({"allowed_origins": ("",)}, "allowed_origins", "has an empty origin"),
        ({"allowed_origins": ("https://x.example/",)}, "allowed_origins", "(no path)"),
        ({"allowed_origins": ("x.example",)}, "allowed_origins", "scheme://host[:port]"),
        ({"allowed_hosts": ("",)}, "allowed_hosts", "has an empty host"),
        ({"allowed_hosts": ("ws.example.com:443",)}, "allowed_hosts", "without a port"),
        ({"allowed_hosts": ("https://ws.example.com",)}, "allowed_hosts", "a host name"),
        ({"allowed_hosts": ("-bad.example",)}, "allowed_hosts", "a host name"),
        ({"kafka_config": (("", "v"),)}, "kafka_config", "has an empty key"),
        ({"kafka_config": {"a": "b"}}, "kafka_config", "must be a tuple of (key, value)"),
        ({"kafka_bootstrap": "a:1,,b:2"}, "kafka_bootstrap", "must be HOST:PORT[,HOST:PORT...]"),
        ({"prometheus_url": "ftp://x/"}, "prometheus_url", "must start with http:// or https://"),
        ({"prometheus_url": "http://[::1"}, "prometheus_url", "not a valid URL (Invalid IPv6"),
        ({"prometheus_url": "http://h:99999/"}, "prometheus_url", "not a valid URL (Port out"),
        ({"prometheus_url": "http:///metrics"}, "prometheus_url", "needs a host"),
        ({"prometheus_url": "broker:9090"}, "prometheus_url", "needs a scheme"),
        ({"redis_url": "foo://bar"}, "redis_url", "must start with redis://, rediss:// or unix://"),
        ({"redis_url": "127.0.0.1:6390"}, "redis_url", "needs a scheme"),
        ({"redis_url": "redis://h:6379/zero"}, "redis_url", "path must be a database number"),
        ({"redis_url": "redis://"}, "redis_url", "needs a host"),
        ({"redis_url": "unix://"}, "redis_url", "needs a socket path"),
        ({"source": "prometheus"}, "prometheus_url", "is required with source prometheus"),
        ({"source": "kafka"}, "kafka_bootstrap", "is required with source kafka"),
        (
            {"ping_interval": 10.0, "ping_timeout": 1.0},
            "ping_timeout",
            "must be greater than ping_interval (10), got 1",
        ),
        ({"ping_interval": 60.0}, "ping_timeout", "must be greater than ping_interval (60)"),
        (
            {"interval": 0.001, "series_window": 900.0},
            "series_window",
            "must be at most 100000 x interval (0.001 s), got 900 s",
        ),
    ],
)
def test_a_bad_setting_raises_one_settings_error(
    values: dict[str, Any], setting: str, problem: str
) -> None:
    with pytest.raises(SettingsError) as info:
        Settings(**values)
    assert info.value.setting == setting
    assert problem in str(info.value)
    assert str(info.value).startswith(setting + " ") or info.value.variable
    assert "\n" not in str(info.value)


def test_good_values_at_the_edges() -> None:
    Settings(
        port=0,
        synthetic_topics=config.MAX_SYNTHETIC_TOPICS,
        synthetic_groups=0,
        history_size=0,
        history_ttl=0.0,
        queue_size=1,
        max_channels=config.MAX_CHANNELS_LIMIT,
        shutdown_timeout=0.0,
        send_buffer_size=0,
        api_keys=("k",),
        allowed_origins=("*", "https://console.example", "http://localhost:5173"),
        allowed_hosts=("*", "console.example", ".corp.example", "10.0.0.1", "[::1]", "::1"),
        prometheus_url="https://user:pw@[::1]:9090/metrics",
        redis_url="rediss://:pw@redis.example:6380/2",
        ping_interval=1.0,
        ping_timeout=1.5,
        interval=0.25,
    )
    Settings(redis_url="unix:///run/redis.sock")
    Settings(redis_url="redis://localhost")


def test_settings_error_is_a_value_error_and_ours() -> None:
    with pytest.raises(ValueError, match="interval must be > 0"):
        Settings(interval=-1.0)
    assert issubclass(SettingsError, TakhinWsError)
    assert takhin_ws.SettingsError is SettingsError


def test_a_missing_extra_names_the_extra_and_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(config, "has_module", lambda name: False)
    with pytest.raises(SettingsError) as info:
        Settings(redis_url="redis://localhost:6379/0")
    assert info.value.setting == "redis_url"
    assert "needs the optional coredis package: pip install 'takhin-ws[redis]'" in str(info.value)
    assert "in a checkout: .venv/bin/pip install -e '.[redis]'" in str(info.value)
    with pytest.raises(SettingsError) as info:
        Settings(source="kafka", kafka_bootstrap="localhost:9092")
    assert info.value.setting == "source"
    assert "confluent_kafka package: pip install 'takhin-ws[kafka]'" in str(info.value)
    Settings()  # nothing optional asked for: nothing needed


def test_has_module() -> None:
    from takhin_ws.config.checks import has_module

    assert has_module("orjson")
    assert not has_module("takhin_ws_no_such_module")


def test_secrets_never_show_in_repr() -> None:
    settings = Settings(
        api_keys=("k3y-a", "k3y-b"),
        publish_keys=("pub-k3y",),
        kafka_config=(("sasl.password", "hunter2"), ("sasl.username", "alice")),
        prometheus_url="http://scrape:s3cret@broker:9090/metrics",
        redis_url="redis://:r3dis@redis:6379/0",
    )
    text = repr(settings)
    for secret in ("k3y-a", "k3y-b", "pub-k3y", "hunter2", "alice", "s3cret", "r3dis"):
        assert secret not in text
    assert "api_keys=('***', '***')" in text
    assert "('sasl.password', '***')" in text
    assert "'http://scrape:***@broker:9090/metrics'" in text
    assert "'redis://:***@redis:6379/0'" in text
    assert settings.kafka_config[0] == ("sasl.password", "hunter2")  # the value itself is kept


def test_from_env() -> None:
    env = {
        "TAKHIN_WS_PORT": "9000",
        "TAKHIN_WS_FORMAT": "Bare",
        "TAKHIN_WS_LOG_LEVEL": "WARNING",
        "TAKHIN_WS_COMPRESSION": "off",
        "TAKHIN_WS_API_KEY": "a, b",
        "TAKHIN_WS_HISTORY_TTL": "none",
        "TAKHIN_WS_KAFKA_CONFIG": "sasl.password=env:PW\nsasl.mechanism=PLAIN",
        "PW": "hunter2",
        "UNRELATED": "x",
    }
    settings = Settings.from_env(env)
    assert settings.port == 9000
    assert (settings.format, settings.log_level) == ("bare", "warning")
    assert settings.compression is False
    assert settings.api_keys == ("a", "b")
    assert settings.history_ttl is None
    assert settings.kafka_config == (("sasl.password", "hunter2"), ("sasl.mechanism", "PLAIN"))


def test_from_env_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAKHIN_WS_MAX_CHANNELS", "12")
    assert Settings.from_env().max_channels == 12


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TAKHIN_WS_PORT": "x"}, "TAKHIN_WS_PORT: expected an integer, got 'x'"),
        ({"TAKHIN_WS_DETECT_CHANGES": "maybe"}, "TAKHIN_WS_DETECT_CHANGES: expected true or"),
        ({"TAKHIN_WS_API_KEY": ",,"}, "api_keys has an empty key"),
        ({"TAKHIN_WS_API_KEY": ""}, "api_keys has an empty key"),
        ({"TAKHIN_WS_INTERVAL": "0"}, "interval must be > 0, got 0"),
        (
            {"TAKHIN_WS_KAFKA_CONFIG": "a=env:NOT_SET_ANYWHERE"},
            "kafka_config a: environment variable 'NOT_SET_ANYWHERE' is not set",
        ),
    ],
)
def test_from_env_refuses_a_bad_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env(env)
    assert message in str(info.value)


_NUMBER_TYPES = ("int", "float", "float | None")
_NUMBERS = [a.name for a in attrs.fields(Settings) if str(a.type) in _NUMBER_TYPES]
_ANYTHING = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
)


@given(name=st.sampled_from(_NUMBERS), value=_ANYTHING)
def test_any_value_of_a_number_setting_is_taken_or_refused_cleanly(name: str, value: Any) -> None:
    setting = None
    try:
        settings = Settings(**{name: value})
    except SettingsError as exc:
        setting = exc.setting
    else:
        taken = getattr(settings, name)
        assert taken is None or math.isfinite(taken)
    assert setting in (None, name, "ping_timeout", "series_window")


def test_config_is_a_leaf() -> None:
    """``config.settings`` (and what it imports) needs nothing of the rest of the package."""
    allowed = {"options", "checks", "_exceptions"}
    package = Path(takhin_ws.__file__).parent
    for module in ("config/settings", "config/options", "config/checks", "_exceptions"):
        tree = ast.parse((package / f"{module}.py").read_text())
        imported = {
            node.module or ""
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.level > 0
        }
        assert imported <= allowed, (module, imported - allowed)
