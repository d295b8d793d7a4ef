"""WA401–WA422 (pickle / PyTorch code execution) and WA140–WA159 (PyTorch container integrity), as raised by the
pickle-family loaders while they parse (``check`` is None).

The verdict is an allowlist, enforced in the exit code: every import and call is judged against
``weightaudit/data/pickle_allowlist.yaml`` (:mod:`~weightaudit.rules.pickle_classify`); anything outside it is
high, critical when ``weightaudit/data/pickle_dangerous.yaml`` knows it runs code, touches files, processes or
the network. The jobs live in their own modules; this one is the entry point the loaders import as ``R``:

- rule definitions: :mod:`~weightaudit.rules.pickle_rule_defs` (WA4xx), :mod:`~weightaudit.rules.torch_container_rules`
  (WA14x/WA15x), re-exported here;
- :func:`pickle_findings` — every WA4xx finding for one :class:`~weightaudit.formats.pickle_vm.PickleResult`
  (verdicts: :mod:`~weightaudit.rules.pickle_verdicts`, bombs: :mod:`~weightaudit.rules.pickle_bombs`, nested
  pickles: :mod:`~weightaudit.rules.pickle_nested`);
- :func:`classify_global` — ``"allowed" | "container" | "unknown" | "denied"`` for a (module, name) pair;
- :func:`weights_only_problems` — why ``torch.load(weights_only=True)`` would refuse the pickles (empty = accepts);
- :func:`executing_calls` — the calls ``weights_only=False`` would make beyond the allowlist.
"""

from __future__ import annotations

from typing import Iterable

from weightaudit.formats.pickle_vm import Global, PickleResult, render
from weightaudit.model import Finding
from weightaudit.rules.pickle_allowlist import AllowEntry, torch_weights_only_globals
from weightaudit.rules.pickle_bombs import bomb_findings
from weightaudit.rules.pickle_classify import Level, classifier_for
from weightaudit.rules.pickle_nested import (MAX_HIDDEN_PICKLES, MAX_NESTED_DEPTH, NESTED_OPCODES,
                                             nested_pickle_findings)
from weightaudit.rules.pickle_rule_defs import *  # noqa: F401,F403 - the rule objects loaders use as R.<RULE>
from weightaudit.rules.pickle_rule_defs import (
    DYNAMIC_GLOBAL, EXT_CODE, GLOBAL_MUTATION, LIMIT_EXCEEDED, OUT_OF_BAND, PARSER_DIFFERENTIAL,
)
from weightaudit.rules.pickle_verdicts import VerdictCollector
from weightaudit.rules.torch_container_rules import *  # noqa: F401,F403

__all__ = ["classify_global", "pickle_findings", "weights_only_problems", "executing_calls", "MAX_NESTED_DEPTH",
           "WEIGHTS_ONLY_GLOBALS", "WEIGHTS_ONLY_OPCODES"]

# What torch's own weights_only unpickler accepts: data (pickle_allowlist.yaml, torch_weights_only).
WEIGHTS_ONLY_GLOBALS: frozenset[str] = torch_weights_only_globals()
WEIGHTS_ONLY_OPCODES: frozenset[str] = frozenset(
    "GLOBAL NEWOBJ REDUCE BUILD APPEND APPENDS SETITEM SETITEMS MARK TUPLE TUPLE1 TUPLE2 TUPLE3 NONE NEWTRUE "
    "NEWFALSE EMPTY_TUPLE EMPTY_LIST EMPTY_DICT EMPTY_SET BININT BININT1 BININT2 LONG1 BINFLOAT BINUNICODE "
    "SHORT_BINSTRING BINPERSID BINGET LONG_BINGET BINPUT LONG_BINPUT PROTO STOP".split()
)

_ANOMALY_RULES = {"differential": PARSER_DIFFERENTIAL, "limit": LIMIT_EXCEEDED, "allocation": LIMIT_EXCEEDED,
                  "ext": EXT_CODE, "dynamic-global": DYNAMIC_GLOBAL, "global-mutation": GLOBAL_MUTATION,
                  "out-of-band": OUT_OF_BAND}
_VERDICT_WORDS = {Level.ALLOWED: "allowed", Level.CONTAINER: "container", Level.UNKNOWN: "unknown",
                  Level.DANGEROUS: "denied"}


def classify_global(module: str, name: str, allow: Iterable[AllowEntry] = ()) -> str:
    """``"allowed"``, ``"container"`` (reviewed data class, medium), ``"unknown"`` (high) or ``"denied"``
    (critical), judging the object ``find_class`` would reach through a dotted ``name``."""
    return _VERDICT_WORDS[classifier_for(allow).judge_global(Global(module, name, module, name)).level]


def pickle_findings(result: PickleResult, path: str, where_prefix: str, offset_base: int = 0,
                    data: bytes | memoryview | None = None, scan_nested: bool = True,
                    allow: Iterable[AllowEntry] = (), nested_opcodes: int = NESTED_OPCODES,
                    hidden_pickles: int = MAX_HIDDEN_PICKLES) -> list[Finding]:
    """Every WA4xx finding for one pickle.

    ``where_prefix`` names the member or pickle (``"archive/data.pkl"``); byte offsets are reported relative
    to the member plus ``offset_base``. ``data`` (the buffer the pickle was read from) enables the nested
    pickle check. ``allow``: extra allowlist entries from the user's policy; ``nested_opcodes``: its
    ``limits.nested_pickle_opcodes``.
    """
    judge = classifier_for(allow)

    def where(pos: int, opcode: str) -> str:
        return f"{where_prefix} byte {pos + offset_base} ({opcode})"

    collector = VerdictCollector(judge, path, where)
    for call in result.calls:
        collector.call(call)
    for use in result.globals:
        collector.imported(use.ref, use.pos, use.opcode)
    findings = collector.findings
    findings.extend(_anomaly_findings(result, path, where))
    for mutation in result.mutations:
        collector.mutation(mutation.target, mutation.pos, mutation.opcode)
    allocations = {a.pos for a in result.anomalies if a.kind == "allocation"}
    findings.extend(bomb_findings(result.calls, path, where, allocations))
    if scan_nested and data is not None:
        findings.extend(nested_pickle_findings(result, path, where, data, judge, nested_opcodes, hidden_pickles))
    return findings


def _anomaly_findings(result: PickleResult, path: str, where) -> list[Finding]:
    findings = []
    seen: set[tuple[str, int]] = set()
    for anomaly in result.anomalies:
        rule = _ANOMALY_RULES.get(anomaly.kind)
        if rule is None or (anomaly.kind, anomaly.pos) in seen:
            continue
        seen.add((anomaly.kind, anomaly.pos))
        findings.append(rule.finding(path, anomaly.message, where=where(anomaly.pos, anomaly.kind)))
    return findings


def weights_only_problems(results: Iterable[PickleResult]) -> list[str]:
    """Why torch's weights_only unpickler would refuse these pickles (empty list: it would accept them)."""
    problems: list[str] = []
    for result in results:
        bad_ops = sorted(set(result.opcodes) - WEIGHTS_ONLY_OPCODES)
        if bad_ops:
            problems.append(f"unsupported opcodes {', '.join(bad_ops)}")
        names = sorted({u.ref.qualname for u in result.globals if u.ref.qualname not in WEIGHTS_ONLY_GLOBALS})
        if names:
            problems.append(f"globals not allowed: {', '.join(names[:10])}")
        if any(not isinstance(c.func, Global) for c in result.calls):
            problems.append("calls a computed callable")
        if result.anomalies:
            problems.append(f"{result.anomalies[0].kind}: {result.anomalies[0].message}")
        if result.error:
            problems.append(f"parse error: {result.error}")
    return problems


def executing_calls(results: Iterable[PickleResult], allow: Iterable[AllowEntry] = ()) -> list[str]:
    """Calls and imports that plain unpickling would make beyond the allowlist (rendered)."""
    judge = classifier_for(allow)
    calls = []
    for result in results:
        calls += [render(c) for c in result.calls if not judge.is_allowed(c.func)]
        calls += [f"import {u.ref.qualname}" for u in result.globals
                  if judge.judge_global(u.ref).level is not Level.ALLOWED]
    return list(dict.fromkeys(calls))
