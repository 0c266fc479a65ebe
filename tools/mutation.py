"""Mutation testing of the core modules, each against its own tests (``make mutation``).

For every module in :data:`MODULES` this runs mutmut 3 (under ``nice -n 10``, one
worker: the machine is shared) in a work directory of its own, ``.mutation/<name>/``:
links to ``src`` and ``tests`` and a ``pyproject.toml`` that is the project's, with
``[tool.mutmut]`` narrowed to that module (``only_mutate``) and its own test files
(``pytest_add_cli_args_test_selection``). Each run starts afresh unless ``--keep``
reuses the last run's verdicts. Then it prints one table:
module, mutants, killed, survived, equivalent, timeout, no tests, raw, score.

    python tools/mutation.py                   # every module
    python tools/mutation.py queue promql      # some of them
    python tools/mutation.py --keep queue      # retry only what the last run did not detect
    python tools/mutation.py --report          # the table from the last runs, no run
    python tools/mutation.py --survivors hub   # the names of the surviving mutants

``mutmut show <name>`` inside ``.mutation/<module>/`` prints a mutant's diff. A mutant
is detected when a test fails (killed) or runs out of time (timeout: the suite does not
pass either), as Stryker counts it. ``raw`` is detected / mutants; ``score`` leaves out
the survivors :data:`EQUIVALENT` explains (mutants no test can tell from the original).
The exit status is 1 when a module's score is below ``--fail-under`` (default 90).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import subprocess
import sys
import tomllib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

ROOT: Final = Path(__file__).resolve().parent.parent
WORK: Final = ROOT / ".mutation"
PACKAGE: Final = "src/takhin_ws"
#: mutmut's separator of class and method in a mutant's name
SEPARATOR: Final = "\u01c1"
#: the score the issue asks of each core module (percent)
DEFAULT_FAIL_UNDER: Final = 90.0
#: mutmut workers per module run: the machine's cores are shared, so one by default
DEFAULT_CHILDREN: Final = 1


@dataclass(frozen=True)
class Module:
    """One row of the table: the files mutated and the tests that must kill them."""

    sources: tuple[str, ...]
    tests: tuple[str, ...]
    #: functions (mutmut's names) that run while the package is imported, such as the
    #: one building the converter and its hooks. mutmut forks each mutant's test run
    #: from a process that has imported the package already, where such a mutant
    #: never runs; these run in a fork server that has imported nothing of ours, so
    #: each test run imports the package afresh with the mutant active (slower).
    import_time: tuple[str, ...] = ()


#: module name -> what is mutated and which tests run against it (its own tests only)
MODULES: Final[dict[str, Module]] = {
    "queue": Module(("core/queue.py",), ("tests/test_queue.py",)),
    "hub": Module(
        (
            "core/hub.py",
            "core/encoding.py",
            "core/history.py",
            "core/clients.py",
            "core/subscriptions.py",
        ),
        (
            "tests/test_hub.py",
            "tests/test_encoding.py",
            "tests/test_hub_epoch.py",
            "tests/test_hub_bus.py",
            "tests/test_retained.py",
            "tests/test_access.py",
        ),
        import_time=("takhin_ws.core.encoding.x__list_fields",),
    ),
    "transport": Module(("net/transport.py",), ("tests/test_transport.py",)),
    "outbuffer": Module(("core/outbuffer.py",), ("tests/test_outbuffer.py",)),
    "sessioncore": Module(
        ("core/session.py",),
        ("tests/test_sessioncore.py", "tests/test_access.py", "tests/test_laghistory.py"),
    ),
    # the session loop's endings, Close echoes, pongs and token expiry are tested over
    # real sockets in the server's, the hostile clients' and the tokens' tests, and its
    # close handshakes' edges in test_session_edges
    "session": Module(
        ("net/session.py",),
        (
            "tests/test_session.py",
            "tests/test_server.py",
            "tests/test_hostile.py",
            "tests/test_tokens_server.py",
            "tests/test_session_edges.py",
        ),
    ),
    "channels": Module(("wire/channels.py",), ("tests/test_channels.py",)),
    "codec": Module(
        ("wire/codec.py", "wire/converter.py"),
        ("tests/test_codec.py", "tests/test_messages.py"),
        import_time=("takhin_ws.wire.converter.x__make_converter",),
    ),
    "validate": Module(("wire/events.py",), ("tests/test_validate.py",)),
    "promql": Module(("sources/promql.py",), ("tests/test_promql.py",)),
}

_Q = "takhin_ws.core.queue.x\u01c1DropOldestQueue\u01c1"
_SC = "takhin_ws.core.session.x\u01c1SessionCore\u01c1"
_T = "takhin_ws.net.transport.x\u01c1SocketTransport\u01c1"
_HUB = "takhin_ws.core.hub.x\u01c1Hub\u01c1"
_SUBS = "takhin_ws.core.subscriptions.x\u01c1Subscriptions\u01c1"
_SESSION = "takhin_ws.net.session.x\u01c1Session\u01c1"
_HIST = "takhin_ws.core.history.x\u01c1"
_OB = "takhin_ws.core.outbuffer.x\u01c1OutboundBuffer\u01c1"
_EV = "takhin_ws.wire.events.x\u01c1ChangeEvent\u01c1"
_CONV = "takhin_ws.wire.converter.x__make_converter"
_PROMQL = "takhin_ws.sources.promql.x_"
_FALSY = "None is falsy like False, and the flag is only tested for truth"
_ASIDE = (
    "only decides whether a message is kept aside, which rebuilds it exactly too (a"
    " frame begins with the header byte 0x81, which no UTF-8 name does; a name of"
    " 65,535 bytes, or one 16 TiB into a frame, is at the bounds' edges)"
)
_BATCH = (
    "only groups queued frames into sends (same bytes, same order); the bound on one"
    " send moves by at most one frame"
)
_SINGLE_ARG = "cattrs reads the type from the hook's annotations: the same registration"
_FORBID = (
    "extra keys are refused twice over (the converter's flag and each attrs hook's own):"
    " either one suffices"
)
_ASSERT_TEXT = "the text of an assertion against the caller's misuse, never shown otherwise"
_UNUSED_TYPE = "our hooks ignore the type argument cattrs passes them"
_NOTE_TEXT = "explain() reads a note's index and the leaf, never the group's texts"

#: (function, mutated line) -> why that mutant cannot change behaviour. The score leaves
#: out survivors described here (docs/contributing.md lists them with these reasons);
#: matching on the mutated line, not mutmut's number, keeps an entry from pointing at
#: another mutant once the function changes.
EQUIVALENT: Final[dict[tuple[str, str], str]] = {
    (f"{_Q}put_nowait", "if len(items) >= self._peak:"): "at equality it stores the same peak",
    (
        f"{_SC}_resume",
        "if self._wants(item) and (joined is None or (item.offset or 1) <= joined)",
    ): "replayed messages always carry an offset",
    **{
        (f"{_EV}as_update", f"return cast({arg}, self)  # every concrete class is one"): (
            "typing.cast returns its argument: the type is for the type checker only"
        )
        for arg in ("None", '"XXEventXX"', '"event"', '"EVENT"')
    },
    (f"{_SC}command_delay", "return 0.0 if self._tokens > 0 else -self._tokens / rate"): (
        "at exactly 0 tokens it returns -0.0, which equals 0.0"
    ),
    **{
        (f"{_PROMQL}counter_increases", f"for p, c in zip(previous, current, {arg})"): (
            "the lengths are compared just before"
        )
        for arg in ("strict=None", "", "strict=False")
    },
    (f"{_PROMQL}counter_increases", "return [c if 0 < c < _INF else 0.0 for c in current]"): (
        "a zero counter gives zero either way"
    ),
    (f"{_PROMQL}histogram_quantile", "if index == 0 and upper < 0:"): (
        "a first bucket bounded at 0 interpolates from 0 to 0 (or is empty: 0.0), the same 0"
    ),
    (f"{_T}__init__", "self._flushing = None"): _FALSY,
    (f"{_T}_flusher", "self._flushing = None"): _FALSY,
    (f"{_T}receive_some", "would_block = None"): _FALSY,
    (f"{_T}_flusher", "sent = None"): (
        "the first pass then counts as progress, which sets the deadline again from the"
        " same moment (no await between)"
    ),
    (f"{_T}__init__", "self.next_ping = None"): "the server sets it before the heartbeat reads it",
    (f"{_T}__init__", "self.next_ping = 1.0"): "the server sets it before the heartbeat reads it",
    **{
        (f"{_OB}_data_chunk", line): _BATCH
        for line in (
            "if not queue and len(first) >= MAX_BATCH_BYTES:",
            "if queue or len(first) >= MAX_BATCH_BYTES:",
            "if not queue or len(first) > MAX_BATCH_BYTES:",
            "while queue and size <= MAX_BATCH_BYTES:",
        )
    },
    (f"{_OB}close", 'self._current_control = ""'): (
        "nothing is written after close but control chunks, each setting its own number"
    ),
    **{
        (f"{_OB}sent", f'assert current is not None, "{text}"'): _ASSERT_TEXT
        for text in ("XXnothing is being writtenXX", "NOTHING IS BEING WRITTEN")
    },
    **{
        (f"{_OB}started", f'assert self._current is None, "{text}"'): _ASSERT_TEXT
        for text in ("XXa chunk is already being writtenXX", "A CHUNK IS ALREADY BEING WRITTEN")
    },
    **{
        (f"{_T}send_all", f'raise trio.BrokenResourceError(self.abort_reason or "{text}")'): (
            "abort always sets a reason: the default is never used"
        )
        for text in ("XXconnection closedXX", "CONNECTION CLOSED")
    },
    (f"{_T}linger_close", "discarded = 1"): "moves the 1 MiB bound by one byte",
    (f"{_T}linger_close", "while discarded <= LINGER_MAX_BYTES:"): (
        "moves the 1 MiB bound by one byte"
    ),
    (f"{_HUB}__init__", "self._closed = None"): _FALSY,
    **{
        (f"{_HUB}_fan_out", f"delivered += subs.offer(channel, item, self._out, {skip})"): (
            "a stream without members skips nobody either way (None: no check per client)"
        )
        for skip in ("subs.members.get(stream_name, None)", "subs.members.get(stream_name, )")
    },
    **{
        (f"{_HUB}commit", line): (
            "encoding again without the data builds it from the payload: the same dict"
        )
        for line in (
            "prepared.channel, prepared.payload, stale=prepared.stale, data=None",
            "prepared.channel, prepared.payload, stale=prepared.stale, )",
        )
    },
    (
        "takhin_ws.core.encoding.x_weight",
        "total += sum(map(weight, items)) if (deep) or True else len(items)",
    ): ("a shortcut: items holding no tuples weigh 1 each, so their sum is their count"),
    **{
        (f"{_SUBS}groups", line): (
            "the groups are only a cache of the members: built again, they are the same"
        )
        for line in (
            "groups = None",
            "groups = self._groups.get(None)",
            "self._groups[channel] = None",
        )
    },
    (
        "takhin_ws.core.encoding.x_encode_published",
        "raw = dumps(decoded) if (data is None) or True else encode_snapshot(decoded, data.lists)",
    ): (
        "dumping the whole envelope gives the bytes its lists spliced in give (a test checks"
        " it): the pieces only keep that off one step"
    ),
    **{
        ("takhin_ws.core.encoding.x_encode_snapshot", line): (
            "a list's key occurs once in the head (its lists empty, no text of a source"
            " before them): found from the start, from the last one or from the end alike"
        )
        for line in (
            "at = raw.index(marker, None) + len(marker) - 1",
            "at = raw.index(marker, ) + len(marker) - 1",
            "at = raw.rindex(marker, pos) + len(marker) - 1",
            "pos = None",
        )
    },
    (f"{_SUBS}set", 'self.views[channel] = ""'): (
        "the values of the views table are never read: it is an ordered set"
    ),
    **{
        (
            f"{_SESSION}ending",
            f'return Ending("dropped", CLOSE_ABNORMAL, self.transport.abort_reason or "{text}")',
        ): (
            "the server asks for the ending only after aborting the transport, and abort"
            " always records a reason: the default is never read"
        )
        for text in ("XXconnection lostXX", "CONNECTION LOST")
    },
    (f"{_HIST}StreamHistory\u01c1replay", "if start > whole:"): (
        "at start == whole both branches return every message kept whole (no frame before)"
    ),
    (f"{_HIST}StreamHistory\u01c1_expire", "if times is None and self._ttl is None:"): (
        "arrival times are kept exactly when there is a TTL: either check alone decides"
    ),
    (f"{_HIST}RetainedFrames\u01c1__init__", "self.first = 1"): (
        "read only once a message is kept, which sets it (an empty ring takes any offset)"
    ),
    (f"{_HIST}RetainedFrames\u01c1__init__", 'self._locators = ArrayQueue("Q")'): (
        "a locator is never negative and below 2**63: 'q' and 'Q' hold it alike"
    ),
    (
        f"{_HIST}StreamHistory\u01c1__init__",
        'self._times: ArrayQueue | None = None if (ttl is None) and False else ArrayQueue("d")',
    ): (
        "arrival times kept without a TTL are never read (expiry needs a TTL too): only"
        " 8 bytes a message more"
    ),
    (f"{_HIST}RetainedFrames\u01c1_locate", "position = frame.rfind(name)"): (
        "any run of the name's bytes in the frame rebuilds the same route"
    ),
    **{
        (f"{_HIST}RetainedFrames\u01c1_locate", line): _ASIDE
        for line in (
            "if position <= 0 or len(name) > _LENGTH_MASK or position > _MAX_POSITION:",
            "if position < 1 or len(name) > _LENGTH_MASK or position > _MAX_POSITION:",
            "if position < 0 or len(name) >= _LENGTH_MASK or position > _MAX_POSITION:",
            "if position < 0 or len(name) > _LENGTH_MASK or position >= _MAX_POSITION:",
        )
    },
    **{
        (f"{_HIST}ArrayQueue\u01c1popleft", line): (
            "only moves when the taken prefix is cut off: the same values, memory still"
            " bounded by a constant factor of what is held"
        )
        for line in ("if self._head * 3 >= len(values):", "if self._head * 2 > len(values):")
    },
    **{
        ("takhin_ws.wire.codec.x_decode", line): (
            "a first guess that only decides whether to measure the exact UTF-8 size"
        )
        for line in (
            "if max_size is not None and len(raw) * (1 if (isinstance(raw, bytes)) and False"
            " else 4) > max_size:",
            "if max_size is not None and len(raw) * (2 if isinstance(raw, bytes) else 4) >"
            " max_size:",
            "if max_size is not None and len(raw) * (1 if isinstance(raw, bytes) else 5) >"
            " max_size:",
            "if max_size is not None and len(raw) * (1 if isinstance(raw, bytes) else 4) >="
            " max_size:",
        )
    },
    **{
        (_CONV, f"conv.register_structure_hook({hook})"): _SINGLE_ARG
        for hook in (
            "_strict_int",
            "_strict_float",
            "_strict_str",
            "_strict_bool",
            "_strict_seconds",
            "_structure_subscribe",
            "_structure_unsubscribe",
        )
    },
    (_CONV, "conv.register_unstructure_hook(_unstructure_subscribe)"): _SINGLE_ARG,
    (_CONV, "conv.register_unstructure_hook(unstructure_point)"): _SINGLE_ARG,
    (_CONV, "conv.register_unstructure_hook(unstructure_history)"): _SINGLE_ARG,
    **{
        (_CONV, f'HistoryPoint, conv, group_lags=override(rename="groupLags", {arg})'): (
            "cattrs unstructures a mapping to the same dict"
        )
        for arg in ("unstruct_hook=None", "")
    },
    (_CONV, "conv = make_converter(forbid_extra_keys=None)"): _FORBID,
    (_CONV, "conv = make_converter(forbid_extra_keys=False)"): _FORBID,
    (_CONV, "inner = make_dict_structure_fn(cls, conv, **overrides)"): _FORBID,
    (_CONV, "key_hook = conv.get_structure_hook(None)"): (
        "JSON object keys are always strings, which that hook passes too"
    ),
    (_CONV, "return {key_hook(k, None): value_hook(v, value_type) for k, v in value.items()}"): (
        _UNUSED_TYPE
    ),
    (_CONV, "return {key_hook(k, key_type): value_hook(v, None) for k, v in value.items()}"): (
        _UNUSED_TYPE
    ),
    (_CONV, "out.append(item_hook(element, None))"): _UNUSED_TYPE,
    (_CONV, "return inner(value, None)"): _UNUSED_TYPE,
    (_CONV, "return inner(value, )"): _UNUSED_TYPE,
    (_CONV, "(item,) = [a for a in get_args(tp) if a is not Ellipsis][:2] or [Any]"): (
        "every sequence in the protocol is homogeneous (one type argument)"
    ),
    **{
        (_CONV, line): "an array item's own error never carries notes of its own"
        for line in (
            '*getattr(None, "__notes__", []),',
            '*getattr(exc, "XX__notes__XX", []),',
            '*getattr(exc, "__NOTES__", []),',
        )
    },
    (_CONV, "IterableValidationNote(None, index, item),"): _NOTE_TEXT,
    (_CONV, 'IterableValidationNote(f"structuring item @ index {index}", index, None),'): (
        "every hook's error in an array item says what it expected, so the note's type"
        " is never needed to name it"
    ),
    (_CONV, "None,"): _NOTE_TEXT,
    (_CONV, '"XXwhile structuring an arrayXX",'): _NOTE_TEXT,
    (_CONV, '"WHILE STRUCTURING AN ARRAY",'): _NOTE_TEXT,
}

#: mutmut's exit-code verdicts (``mutmut.stats.status_by_exit_code``), grouped for the table
#: (255 is mutmut's "timeout", but it is what a test run that cannot start exits with,
#: as when a mutant breaks the import of the package: that mutant is killed)
KILLED: Final = frozenset({1, 3, 37, 255})
SURVIVED: Final = frozenset({0})
TIMEOUT: Final = frozenset({36, -24, 24, 152})
NO_TESTS: Final = frozenset({5, 33})
SKIPPED: Final = frozenset({34})


@dataclass(frozen=True)
class Score:
    name: str
    mutants: int
    killed: int
    survived: int
    timeout: int
    no_tests: int
    other: int
    #: survivors listed in :data:`EQUIVALENT` (counted in ``survived`` too)
    equivalent: int = 0

    @property
    def raw(self) -> float:
        """Detected (killed or timed out) per mutant."""
        detected = self.killed + self.timeout
        return 100.0 * detected / self.mutants if self.mutants else 100.0

    @property
    def score(self) -> float:
        """Detected per mutant that can be detected (equivalent mutants left out)."""
        detected, total = self.killed + self.timeout, self.mutants - self.equivalent
        return 100.0 * detected / total if total else 100.0


def mutmut_config(module: Module, base: dict[str, Any], fresh_imports: bool) -> dict[str, Any]:
    """The project's ``[tool.mutmut]`` narrowed to *module* and its tests."""
    config = dict(base)
    config["source_paths"] = ["src"]
    config["only_mutate"] = [f"{PACKAGE}/{source}" for source in module.sources]
    config["pytest_add_cli_args_test_selection"] = list(module.tests)
    if fresh_imports:
        config["process_isolation"] = "forkserver"
        config["forkserver_warmup"] = "none"
    return config


def toml_value(value: Any) -> str:
    """*value* (str, bool, number or a list of those) as TOML: JSON spells them alike."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    return json.dumps(value)


def without_mutmut_table(pyproject: Path) -> str:
    """The text of *pyproject* without its ``[tool.mutmut]`` table (pytest's settings stay)."""
    kept: list[str] = []
    skipping = False
    for line in pyproject.read_text("utf-8").splitlines(keepends=True):
        if line.startswith("["):
            skipping = line.strip() == "[tool.mutmut]"
        if not skipping:
            kept.append(line)
    return "".join(kept)


def prepare(name: str, module: Module, *, fresh_imports: bool) -> Path:
    """The work directory of *name*: links to the sources and tests, and its config."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    base = project.get("tool", {}).get("mutmut", {})
    work = WORK / name
    work.mkdir(parents=True, exist_ok=True)
    for link in ("src", "tests"):
        target = work / link
        if not target.is_symlink():
            target.symlink_to(ROOT / link, target_is_directory=True)
    lines = [
        f"{key} = {toml_value(value)}"
        for key, value in mutmut_config(module, base, fresh_imports).items()
    ]
    config = without_mutmut_table(ROOT / "pyproject.toml") + "\n[tool.mutmut]\n"
    config += "\n".join(lines) + "\n"
    config_path = work / "pyproject.toml"
    if not config_path.exists() or config_path.read_text("utf-8") != config:
        config_path.write_text(config, "utf-8")
    refresh_copies(work, module)
    return work


def refresh_copies(work: Path, module: Module) -> None:
    """Replace mutmut's stale copies of the sources it does not mutate.

    mutmut copies ``src`` into ``mutants/`` once and keeps it (the tests it copies anew
    each run); a source it mutates is regenerated when it changes, the others are not.
    """
    mutants = work / "mutants"
    if not mutants.exists():
        return
    mutated = {f"{PACKAGE}/{source}" for source in module.sources}
    for tree in ("src",):
        for original in (ROOT / tree).rglob("*"):
            if not original.is_file() or "__pycache__" in original.parts:
                continue
            relative = original.relative_to(ROOT)
            if str(relative) in mutated:
                continue
            copy = mutants / relative
            if not copy.exists() or copy.stat().st_mtime < original.stat().st_mtime:
                copy.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(original, copy)


def functions(module: Module) -> list[str]:
    """mutmut's names of the functions and methods of *module* (``pkg.mod.x_f``,
    ``pkg.mod.xǁClassǁmethod``): its mutants are ``<name>__mutmut_<n>``."""
    out: list[str] = []
    for source in module.sources:
        dotted = "takhin_ws." + source.removesuffix(".py").replace("/", ".")
        tree = ast.parse((ROOT / PACKAGE / source).read_text("utf-8"))
        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                out.append(f"{dotted}.x_{node.name}")
            elif isinstance(node, ast.ClassDef):
                out.extend(
                    f"{dotted}.x{SEPARATOR}{node.name}{SEPARATOR}{item.name}"
                    for item in node.body
                    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
                )
    return out


def selections(name: str, module: Module, keep: bool) -> tuple[list[str], list[str]]:
    """The mutants to run: those of call-time functions, those of import-time ones.

    Fresh, every mutant (as globs per function); with *keep*, those the last run did
    not detect (by name: mutmut reruns a mutant it is given by name)."""
    import_time = set(module.import_time)

    def of_import_time(mutant: str) -> bool:
        return mutant.partition("__mutmut_")[0] in import_time

    if keep and (last := verdicts(name, module)):
        retry = sorted(m for m, code in last.items() if code not in KILLED | TIMEOUT | SKIPPED)
        return [m for m in retry if not of_import_time(m)], [m for m in retry if of_import_time(m)]
    names = functions(module)
    return (
        [f"{fn}__mutmut_*" for fn in names if fn not in import_time],
        [f"{fn}__mutmut_*" for fn in names if fn in import_time],
    )


def sources_changed(work: Path, module: Module) -> bool:
    """Whether a source of *module* changed since its last run (or it never ran)."""
    for source in module.sources:
        meta = work / "mutants" / PACKAGE / f"{source}.meta"
        if not meta.exists() or (ROOT / PACKAGE / source).stat().st_mtime > meta.stat().st_mtime:
            return True
    return False


def run(name: str, module: Module, children: int, niceness: int, keep: bool) -> int:
    work = WORK / name
    if keep and sources_changed(work, module):
        print(f"   {name}: its source changed since the last run, so it runs afresh")
        keep = False
    if not keep:
        shutil.rmtree(work / "mutants", ignore_errors=True)
    call_time, import_time = selections(name, module, keep)
    print(f"== {name} (in {work.relative_to(ROOT)})", flush=True)
    returncode = 0
    if call_time:
        prepare(name, module, fresh_imports=False)
        returncode = mutmut(work, "call-time", call_time, children, niceness, ())
    if import_time and returncode == 0:
        prepare(name, module, fresh_imports=True)
        returncode = mutmut(
            work, "import-time", import_time, children, niceness, module.import_time
        )
    return returncode


def mutmut(
    work: Path,
    phase: str,
    selection: Sequence[str],
    children: int,
    niceness: int,
    import_time: Sequence[str],
) -> int:
    """Run ``mutmut run`` on *selection* in *work* (through :func:`as_mutmut`)."""
    command = ["nice", "-n", str(niceness), sys.executable, str(Path(__file__).resolve())]
    command += ["--as-mutmut", ",".join(import_time), "run", "--max-children", str(children)]
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    log = work / f"mutmut-{phase}.log"
    with log.open("w") as out:
        done = subprocess.run(
            [*command, *selection], cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    if done.returncode != 0:
        print(f"   mutmut failed ({done.returncode}); its output: {log.relative_to(ROOT)}")
    return done.returncode


def as_mutmut(import_time: str, argv: Sequence[str]) -> None:
    """mutmut's command line, with every test mapped to the *import_time* functions.

    mutmut maps a function to the tests that called it, but a function called while
    the package is imported (building the converter) runs before any test: it is
    credited to none, or to the first. Each of its mutants must face every test."""
    import mutmut.__main__ as cli
    from mutmut.state import state

    names = [n for n in import_time.split(",") if n]
    collect = cli.collect_or_load_stats

    def collect_then_map(*args: Any, **kwargs: Any) -> None:
        collect(*args, **kwargs)
        every_test = set(state().duration_by_test)
        for fn in names:
            state().tests_by_mangled_function_name[fn] = set(every_test)

    cli.collect_or_load_stats = collect_then_map
    sys.argv = ["mutmut", *argv]
    cli.cli()


def verdicts(name: str, module: Module) -> dict[str, int | None]:
    """Mutant name -> mutmut's exit code, from the work directory's ``.meta`` files."""
    out: dict[str, int | None] = {}
    for source in module.sources:
        meta = WORK / name / "mutants" / PACKAGE / f"{source}.meta"
        if meta.exists():
            out.update(json.loads(meta.read_text("utf-8"))["exit_code_by_key"])
    return out


def score(name: str, module: Module) -> Score:
    codes = verdicts(name, module)
    counts = Counter(codes.values())

    def count(group: frozenset[int]) -> int:
        return sum(n for code, n in counts.items() if code in group)

    total = sum(counts.values()) - count(SKIPPED)
    killed, survived, timeout = count(KILLED), count(SURVIVED), count(TIMEOUT)
    no_tests = count(NO_TESTS)
    other = total - killed - survived - timeout - no_tests
    equivalent = len(equivalents(name, module, codes))
    return Score(name, total, killed, survived, timeout, no_tests, other, equivalent)


def equivalents(name: str, module: Module, codes: dict[str, int | None]) -> dict[str, str]:
    """Surviving mutant -> why it is equivalent, for the survivors :data:`EQUIVALENT`
    describes (matched by function and mutated line, not by mutmut's number)."""
    survivors = [m for m, code in codes.items() if code in SURVIVED]
    out: dict[str, str] = {}
    for mutant in survivors:
        function = mutant.partition("__mutmut_")[0]
        for line in mutated_lines(name, module, mutant):
            reason = EQUIVALENT.get((function, line))
            if reason is not None:
                out[mutant] = reason
    return out


def mutated_lines(name: str, module: Module, mutant: str) -> list[str]:
    """The lines of *mutant* that differ from the original function (stripped)."""
    function, _, number = mutant.partition("__mutmut_")
    dotted = function.rpartition(".")[0] if "." in function else function
    path = WORK / name / "mutants" / "src" / (dotted.replace(".", "/") + ".py")
    bodies = _function_sources(path)
    local = function.rpartition(".")[2]
    original = bodies.get(f"{local}__mutmut_orig", [])
    changed = bodies.get(f"{local}__mutmut_{number}", [])
    return [line for line in changed[1:] if line not in original[1:]]


_SOURCES: dict[Path, dict[str, list[str]]] = {}


def _function_sources(path: Path) -> dict[str, list[str]]:
    """Function name -> its stripped source lines, for every function in *path*."""
    if path not in _SOURCES:
        text = path.read_text("utf-8") if path.exists() else ""
        lines = text.splitlines()
        out: dict[str, list[str]] = {}
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno:
                out[node.name] = [
                    line.strip()
                    for line in lines[node.lineno - 1 : node.end_lineno]
                    if line.strip()
                ]
        _SOURCES[path] = out
    return _SOURCES[path]


def table(scores: Sequence[Score]) -> str:
    header = (
        "module",
        "mutants",
        "killed",
        "survived",
        "equivalent",
        "timeout",
        "no tests",
        "raw",
        "score",
    )
    rows = [header] + [
        (
            s.name,
            str(s.mutants),
            str(s.killed),
            str(s.survived),
            str(s.equivalent),
            str(s.timeout),
            str(s.no_tests + s.other),
            f"{s.raw:.1f}%",
            f"{s.score:.1f}%",
        )
        for s in scores
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        return "| " + " | ".join(cells) + " |"

    rule = "|" + "|".join("-" * (w + 1) + (":" if i else "-") for i, w in enumerate(widths)) + "|"
    return "\n".join([line(rows[0]), rule, *(line(row) for row in rows[1:])])


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="mutation", description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", metavar="MODULE", help=", ".join(MODULES))
    parser.add_argument("--report", action="store_true", help="print the last results, run none")
    parser.add_argument("--survivors", action="store_true", help="list surviving mutants")
    parser.add_argument(
        "--keep", action="store_true", help="keep the last killed verdicts, retry the rest"
    )
    parser.add_argument("--children", type=int, default=DEFAULT_CHILDREN, help="mutmut workers")
    parser.add_argument("--nice", type=int, default=10, help="niceness of the mutmut runs")
    parser.add_argument("--fail-under", type=float, default=DEFAULT_FAIL_UNDER, metavar="PCT")
    args = parser.parse_args(argv)
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        parser.error(f"unknown module {', '.join(unknown)} (known: {', '.join(MODULES)})")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--as-mutmut"]:
        as_mutmut(argv[1], argv[2:])
        return 0
    args = parse_args(argv)
    names = args.modules or list(MODULES)
    failed = False
    if not args.report and not args.survivors:
        for name in names:
            failed |= run(name, MODULES[name], args.children, args.nice, args.keep) != 0
    scores = [score(name, MODULES[name]) for name in names]
    if args.survivors:
        for name in names:
            codes = verdicts(name, MODULES[name])
            equivalent = equivalents(name, MODULES[name], codes)
            for mutant, code in sorted(codes.items()):
                if code not in KILLED and code not in SKIPPED:
                    why = f": equivalent, {equivalent[mutant]}" if mutant in equivalent else ""
                    print(f"{name}: {mutant} (exit {code}){why}")
        return 0
    print(table(scores))
    low = [s.name for s in scores if s.score < args.fail_under]
    if low:
        print(f"below {args.fail_under:g}%: {', '.join(low)}")
    return 1 if failed or low else 0


if __name__ == "__main__":
    sys.exit(main())
