"""The allowlist verdict for one pickle run: calls, callable arguments, imports, data containers, mutations.

Every call is judged by its callable (:class:`~weightaudit.rules.pickle_classify.Classifier`): critical WA401 when
it is known to be dangerous, high WA403 when it is not allowlisted, medium WA418 for a reviewed data-container
class built the way its writers build it. Every argument of every call is walked (bounded) for callables handed
over — globals that are not allowlisted become WA417, critical or high. Globals imported but neither called nor
handed over are WA402 (known-dangerous; critical for modules with import side effects) or WA403.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from weightaudit.formats.pickle_values import Call, Global, render
from weightaudit.model import Finding, Severity
from weightaudit.rules.pickle_classify import Classifier, Level, Verdict
from weightaudit.rules.pickle_rule_defs import (
    DANGEROUS_CALL, DANGEROUS_IMPORT, DATA_CONTAINER, OBJECT_MUTATION, POLICY_ALLOWED, TRAMPOLINE_ARGUMENT,
    UNKNOWN_GLOBAL,
)

__all__ = ["VerdictCollector", "MAX_ARGUMENT_NODES", "MAX_ARGUMENT_DEPTH"]

MAX_ARGUMENT_NODES = 10_000       # values walked in the arguments of one call
MAX_ARGUMENT_DEPTH = 16           # nesting walked inside one call's arguments (nested calls are judged on their own)
_RECONSTRUCTORS = frozenset({"copyreg._reconstructor", "copyreg.__newobj__", "copyreg.__newobj_ex__"})
_NEWOBJ_OPCODES = frozenset({"NEWOBJ", "NEWOBJ_EX"})

Where = Callable[[int, str], str]


def _iter_globals(roots: tuple[Any, ...], walked: set[int]) -> list[Global]:
    """Globals inside a call's arguments, not descending into nested calls (they are judged themselves).

    ``walked`` holds the ids of containers already walked for this pickle, so a container shared through the
    memo by many calls is walked once: total work stays linear in the pickle's size. A global past the bounds is
    still reported where it is imported (WA402/WA403), so nothing passes silently. A list, not a generator: this
    runs once per call of the pickle (200,000 times for a 100,000-tensor checkpoint)."""
    found: list[Global] = []
    stack: list[tuple[Any, int]] = [(root, 0) for root in roots]
    budget = MAX_ARGUMENT_NODES
    while stack and budget > 0:
        item, depth = stack.pop()
        budget -= 1
        if type(item) in _LEAVES:
            continue
        if isinstance(item, Global):
            found.append(item)
        elif depth < MAX_ARGUMENT_DEPTH and isinstance(item, _WALKED):
            if id(item) in walked:
                continue
            walked.add(id(item))
            inner = depth + 1
            if isinstance(item, dict):
                stack.extend([(v, inner) for pair in list(item.items())[:budget] for v in pair])
            elif isinstance(item, (tuple, list)):
                stack.extend([(v, inner) for v in item[:budget]])
            else:
                stack.extend([(v, inner) for v in list(item)[:budget]])
    return found


_WALKED = (dict, tuple, list, set, frozenset)
_LEAVES = frozenset({str, int, bool, float, bytes, type(None), Call})   # never a Global, never walked


@dataclass
class VerdictCollector:
    """Collects the verdict findings of one pickle; each callable is reported once, at its worst use."""

    judge: Classifier
    path: str
    where: Where
    findings: list[Finding] = field(default_factory=list)
    reported: set[str] = field(default_factory=set)
    policy_noted: set[str] = field(default_factory=set)
    walked: set[int] = field(default_factory=set)
    innermost_of: dict[int, Any] = field(default_factory=dict)   # call chains walked once (see judge_callable)
    global_verdicts: dict[int, tuple[Global, Verdict]] = field(default_factory=dict)   # one judgement per reference

    def _note_policy(self, verdict: Verdict, pos: int, opcode: str) -> None:
        entry = verdict.entry
        if entry is None or not entry.source.startswith("policy") or verdict.name in self.policy_noted:
            return
        self.policy_noted.add(verdict.name)
        self.findings.append(POLICY_ALLOWED.finding(
            self.path, f"{verdict.name} allowed by {entry.source}: {entry.reason}", where=self.where(pos, opcode)))

    # ---- calls
    def call(self, call: Call) -> None:
        func = call.func
        known = self.global_verdicts.get(id(func)) if type(func) is Global else None
        if known is not None:
            verdict = known[1]
        else:
            verdict = self.judge.judge_callable(func, self.innermost_of)
            if type(func) is Global:                # the reference is kept with its verdict: its id stays its own
                self.global_verdicts[id(func)] = (func, verdict)
        self._note_policy(verdict, call.pos, call.opcode)
        if verdict.level is Level.ALLOWED and (verdict.entry is None or not verdict.entry.arg_values):
            self._arguments(call, verdict)          # the common case: nothing to report about the call itself
            return
        where = self.where(call.pos, call.opcode)
        if verdict.level is Level.DANGEROUS:
            self.findings.append(DANGEROUS_CALL.finding(self.path, f"calls {render(call)} ({verdict.label})",
                                                        where=where))
        elif verdict.level is Level.UNKNOWN and verdict.name not in self.reported:
            self.findings.append(UNKNOWN_GLOBAL.finding(
                self.path, f"calls {render(call)} ({verdict.name}: {verdict.why})", where=where))
        elif verdict.level is Level.CONTAINER:
            self._container_call(call, verdict, where)
        elif verdict.entry is not None and verdict.entry.arg_values and not getattr(call, "from_scan", False):
            self._constant_arguments(call, verdict, where)
        if verdict.level is not Level.ALLOWED:
            self.reported.add(verdict.name)
        self._arguments(call, verdict)

    def _constant_arguments(self, call: Call, verdict: Verdict, where: str) -> None:
        args = call.args if isinstance(call.args, tuple) else ()
        for index, allowed in verdict.entry.arg_values.items():
            value = args[index] if index < len(args) else None
            if not isinstance(value, (str, int, bytes)) or value not in allowed:
                self.findings.append(UNKNOWN_GLOBAL.finding(
                    self.path, f"calls {render(call)}: argument {index} of {verdict.name} may only be one of "
                               f"{', '.join(sorted(map(repr, allowed)))}", where=where))
                return

    def _container_call(self, call: Call, verdict: Verdict, where: str) -> None:
        args = call.args if isinstance(call.args, tuple) else ()
        enum_lookup = verdict.entry is not None and verdict.entry.kind == "enum" and call.opcode == "REDUCE" \
            and len(args) == 1 and isinstance(args[0], (str, int)) and not call.kwargs
        if call.opcode in _NEWOBJ_OPCODES or enum_lookup:
            if verdict.name not in self.reported:
                self.findings.append(DATA_CONTAINER.finding(
                    self.path, f"builds {verdict.name} ({verdict.why}); loading needs weights_only=False and runs "
                               "that library's code", where=where))
            return
        self.findings.append(UNKNOWN_GLOBAL.finding(
            self.path, f"calls {render(call)}: the data-container class {verdict.name} is called with "
                       f"{call.opcode}, which runs its constructor with chosen arguments", where=where))

    def _arguments(self, call: Call, verdict: Verdict) -> None:
        found = _iter_globals((call.args, call.kwargs), self.walked)   # both live on the Call
        if not found:
            return
        reconstructor = isinstance(call.func, Global) and call.func.qualname in _RECONSTRUCTORS \
            and verdict.level is Level.ALLOWED
        seen: set[str] = set()
        for ref in found:
            if ref.qualname in seen:
                continue
            seen.add(ref.qualname)
            self._argument(call, ref, reconstructor)

    def _argument(self, call: Call, ref: Global, reconstructor: bool) -> None:
        verdict = self.judge.judge_global(ref)
        self._note_policy(verdict, call.pos, call.opcode)
        if verdict.level is Level.ALLOWED:
            return
        where = self.where(call.pos, call.opcode)
        if verdict.level is Level.CONTAINER and reconstructor:
            if verdict.name not in self.reported:
                self.reported.add(verdict.name)
                self.findings.append(DATA_CONTAINER.finding(
                    self.path, f"builds {verdict.name} through {render(call.func)} ({verdict.why}); loading needs "
                               "weights_only=False and runs that library's code", where=where))
            return
        severity = Severity.CRITICAL if verdict.level is Level.DANGEROUS else Severity.HIGH
        self.reported.add(verdict.name)
        self.findings.append(TRAMPOLINE_ARGUMENT.finding(
            self.path, f"{render(call, depth=2)} is handed {verdict.name} ({verdict.label})", where=where,
            severity=severity))

    # ---- imports
    def imported(self, ref: Global, pos: int, opcode: str) -> None:
        verdict = self.judge.judge_global(ref)
        self._note_policy(verdict, pos, opcode)
        if verdict.level is Level.ALLOWED or verdict.name in self.reported:
            return
        self.reported.add(verdict.name)
        where = self.where(pos, opcode)
        if verdict.level is Level.DANGEROUS:
            severity = Severity.CRITICAL if verdict.on_import else None
            self.findings.append(DANGEROUS_IMPORT.finding(self.path, f"imports {verdict.name} ({verdict.label})",
                                                          where=where, severity=severity))
        elif verdict.level is Level.UNKNOWN:
            self.findings.append(UNKNOWN_GLOBAL.finding(self.path, f"imports {verdict.name} ({verdict.why})",
                                                        where=where))
        else:
            self.findings.append(DATA_CONTAINER.finding(
                self.path, f"imports the data-container class {verdict.name} ({verdict.why})", where=where))

    # ---- BUILD / SETITEM / APPEND on objects
    def mutation(self, target: Any, pos: int, opcode: str) -> None:
        if not isinstance(target, Call):
            return
        verdict = self.judge.judge_callable(target.func, self.innermost_of)
        label = f"mutation {verdict.name}"
        if verdict.level in (Level.ALLOWED, Level.CONTAINER) or label in self.reported:
            return
        self.reported.add(label)
        self.findings.append(OBJECT_MUTATION.finding(
            self.path, f"{opcode} on the result of {render(target, depth=1)} runs its own methods",
            where=self.where(pos, opcode)))
