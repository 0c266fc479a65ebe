"""A throwaway single-node Apache Kafka broker (KRaft mode) for the Kafka source tests.

``kafka_classpath()`` fetches the broker (``org.apache.kafka:kafka_2.13``, version
:data:`KAFKA_VERSION`) and its dependencies from Maven Central once, with Maven and a
small generated pom, into ``~/.cache/takhin-ws-kafka/<version>/libs``
(``TAKHIN_WS_KAFKA_CACHE`` moves it). The broker runs on the machine's Java 17. Without
``java`` or ``mvn`` the tests skip with the reason, unless ``TAKHIN_WS_REQUIRE_KAFKA`` is
set (CI sets it): then they fail.

:class:`KafkaBroker` formats a storage directory and runs ``kafka.Kafka`` as broker and
controller on free loopback ports: a ``PLAINTEXT`` listener (:attr:`~KafkaBroker.bootstrap`)
and a ``SASL_PLAINTEXT`` one with the PLAIN mechanism (:attr:`~KafkaBroker.sasl_bootstrap`,
user :data:`SASL_USER`). ``stop``/``start`` on the same ports and storage play a broker
restart. The session fixture ``kafka`` (re-exported by ``conftest``) shares one broker
with every test; ``kafka3`` runs a 3.x broker (:data:`KAFKA3_VERSION`) for the test
that reads both major versions.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import os
import re
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

try:
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    from kafka_ops import (  # re-exported: what the tests do to the broker
        admin_client,
        commit,
        create_topic,
        delete_topic,
        end_offsets,
        produce,
        unique,
    )
except ImportError:  # the kafka extra is missing: the fixture says so and skips
    HAVE_CLIENT = False
else:
    HAVE_CLIENT = True

__all__ = [
    "KAFKA3_VERSION",
    "KAFKA_VERSION",
    "KafkaBroker",
    "admin_client",
    "commit",
    "create_topic",
    "delete_topic",
    "end_offsets",
    "free_port",
    "free_ports",
    "java_binary",
    "kafka",
    "kafka3",
    "kafka_classpath",
    "produce",
    "unique",
]

REQUIRE_KAFKA = "TAKHIN_WS_REQUIRE_KAFKA"
KAFKA_VERSION = "4.1.1"
#: The 3.x broker the compatibility test reads too (KRaft, Java 17).
KAFKA3_VERSION = "3.9.1"
#: The slf4j binding, so the broker's log says why when it fails to start.
LOG4J_VERSION = "2.24.3"
CACHE = Path(os.environ.get("TAKHIN_WS_KAFKA_CACHE", "~/.cache/takhin-ws-kafka")).expanduser()
#: Seconds Maven may take to fetch the broker (~45 MB) on a cold cache.
FETCH_TIMEOUT = 900.0
#: Seconds the broker may take to format its storage, to answer, and to stop.
FORMAT_TIMEOUT = 120.0
START_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0
#: The SASL/PLAIN account of the second listener.
SASL_USER = "takhin"
SASL_PASSWORD = "takhin-test-secret"
#: The heap of a test broker; the benchmark's 12,000 partitions want more.
DEFAULT_HEAP = "768m"

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>takhin-ws</groupId>
  <artifactId>kafka-test-broker</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>{kafka}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j}</version>
    </dependency>
  </dependencies>
</project>
"""

_LOG4J2 = """status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.out.ref = out
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = info
"""


def free_ports(count: int) -> list[int]:
    """*count* distinct free loopback ports (held open together while chosen)."""
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
        return ports


def free_port() -> int:
    return free_ports(1)[0]


def _unavailable(reason: str) -> None:
    if os.environ.get(REQUIRE_KAFKA):
        pytest.fail(f"{reason}; {REQUIRE_KAFKA} is set, so the Kafka tests must run")
    pytest.skip(reason)


def _java_major(java: str) -> int | None:
    try:
        done = subprocess.run([java, "-version"], capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(rb'version "(\d+)', done.stderr + done.stdout)
    return int(match.group(1)) if match else None


def java_binary() -> str:
    """``java`` (17 or later), or the test skips (fails in CI)."""
    java = shutil.which("java")
    if java is None:
        _unavailable("java not found (Debian: openjdk-17-jre-headless)")
        raise AssertionError("unreachable")
    major = _java_major(java)
    if major is None or major < 17:
        _unavailable(f"{java} is not Java 17 or later (found {major})")
    return java


def kafka_classpath(version: str = KAFKA_VERSION) -> str:
    """The classpath (``DIR/*``) of broker *version*, fetched by Maven into the cache once."""
    home = CACHE / version
    libs = home / "libs"
    stamp = home / ".complete"
    if stamp.exists():
        return str(libs / "*")
    mvn = shutil.which("mvn")
    if mvn is None:
        _unavailable("mvn not found (Debian: maven), needed to fetch the Kafka broker")
        raise AssertionError("unreachable")
    home.mkdir(parents=True, exist_ok=True)
    with (home / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test run may be fetching it
        if not stamp.exists():
            (home / "pom.xml").write_text(_POM.format(kafka=version, log4j=LOG4J_VERSION))
            command = [
                mvn,
                "-q",
                "-B",
                "-f",
                str(home / "pom.xml"),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={libs}",
            ]
            try:
                done = subprocess.run(
                    command, capture_output=True, timeout=FETCH_TIMEOUT, check=False
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                _unavailable(f"maven could not fetch kafka {version}: {exc}")
                raise AssertionError("unreachable") from exc
            if done.returncode != 0:
                tail = (done.stdout + done.stderr).decode(errors="replace").strip()
                _unavailable(
                    f"maven could not fetch kafka {version}: " + " / ".join(tail.splitlines()[-5:])
                )
            stamp.touch()
    return str(libs / "*")


class KafkaBroker:
    """One Kafka broker + controller on loopback, storage in *workdir*."""

    def __init__(
        self,
        java: str,
        classpath: str,
        workdir: Path,
        *,
        heap: str = DEFAULT_HEAP,
        config: Mapping[str, str] | None = None,
    ) -> None:
        self.java = java
        self.classpath = classpath
        self.workdir = workdir
        self.heap = heap
        self.port, self.sasl_port, self.controller_port = free_ports(3)
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.sasl_bootstrap = f"127.0.0.1:{self.sasl_port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "broker.log"
        self.properties = workdir / "server.properties"
        self._config = dict(config or {})
        self._formatted = False

    def _write_config(self) -> None:
        jaas = (
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'username="{SASL_USER}" password="{SASL_PASSWORD}" '
            f'user_{SASL_USER}="{SASL_PASSWORD}";'
        )
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": (
                f"PLAINTEXT://127.0.0.1:{self.port},SASL_PLAINTEXT://127.0.0.1:{self.sasl_port},"
                f"CONTROLLER://127.0.0.1:{self.controller_port}"
            ),
            "advertised.listeners": (
                f"PLAINTEXT://127.0.0.1:{self.port},SASL_PLAINTEXT://127.0.0.1:{self.sasl_port}"
            ),
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": (
                "PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT"
            ),
            "sasl.enabled.mechanisms": "PLAIN",
            "listener.name.sasl_plaintext.plain.sasl.jaas.config": jaas,
            "log.dirs": str(self.workdir / "data"),
            "num.partitions": "1",
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # small preallocated indexes: thousands of partitions stay cheap
            "log.index.size.max.bytes": "65536",
            **self._config,
        }
        self.properties.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
        (self.workdir / "log4j2.properties").write_text(_LOG4J2)

    def _java(self, main: str, *args: str) -> list[str]:
        return [
            self.java,
            f"-Xmx{self.heap}",
            "-XX:+UseSerialGC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}",
            "-cp",
            self.classpath,
            main,
            *args,
        ]

    def format(self) -> None:
        self._write_config()
        # one id in 64 starts with "-": given as --cluster-id=ID, argparse takes it whole
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        command = self._java(
            "kafka.tools.StorageTool",
            "format",
            f"--cluster-id={cluster_id}",
            "-c",
            str(self.properties),
        )
        done = subprocess.run(command, capture_output=True, timeout=FORMAT_TIMEOUT, check=False)
        if done.returncode != 0:
            output = (done.stdout + done.stderr).decode(errors="replace")[-3000:]
            pytest.fail(f"kafka storage format failed ({done.returncode}):\n{output}")
        self._formatted = True

    def start(self) -> None:
        assert self.proc is None, "already running"
        if not self._formatted:
            self.format()
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self._java("kafka.Kafka", str(self.properties)),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code, self.proc = self.proc.returncode, None
                pytest.fail(f"kafka broker exited with {code}:\n{self.log()}")
            if self.answers():
                return
            time.sleep(0.2)
        self.stop()
        pytest.fail(f"kafka broker did not answer on port {self.port}:\n{self.log()}")

    def answers(self) -> bool:
        """Whether the broker serves metadata on its PLAINTEXT listener."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                pass
        except OSError:
            return False
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})
        try:
            return bool(admin.list_topics(timeout=2).brokers)
        except KafkaException:
            return False

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return "(no log)"


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """One broker for the whole session (started on first use, stopped at the end)."""
    if not HAVE_CLIENT:
        _unavailable("confluent-kafka is not installed (pip install 'takhin-ws[kafka]')")
    java = java_binary()
    broker = KafkaBroker(java, kafka_classpath(), tmp_path_factory.mktemp("kafka"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """An Apache Kafka 3.x broker (:data:`KAFKA3_VERSION`) for the compatibility test."""
    if not HAVE_CLIENT:
        _unavailable("confluent-kafka is not installed (pip install 'takhin-ws[kafka]')")
    java = java_binary()
    classpath = kafka_classpath(KAFKA3_VERSION)
    broker = KafkaBroker(java, classpath, tmp_path_factory.mktemp("kafka3"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
