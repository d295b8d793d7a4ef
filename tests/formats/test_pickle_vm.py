"""The symbolic pickle machine: CPython conformance on data-only pickles, differentials, limits, no recursion.

``pickle.loads``/``pickle.load`` run here only on pickles this file builds that import nothing (or, for the FRAME
check, only ``builtins.str``), to prove the machine reads bytes the way CPython does.
"""

from __future__ import annotations

import io
import pickle
import struct

import pytest

from weightaudit.formats.pickle_vm import (
    BytesRef, Call, DynamicGlobal, ExtRef, Global, Limits, OutOfBandBuffer, c_strtol, render, run_pickle, scan_pickle, scan_stream,
)

DATA_VALUES = [
    0, 1, -1, 255, 256, 65535, 65536, -(2**31), 2**31 - 1, 2**63, -(2**70), 3.25, -0.0, float("inf"), True, False,
    None, "", "héllo\n\\", "x" * 300, [], [1, [2, [3]]], (), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4), {},
    {"a": 1, 2: [3, (4, 5)]}, {"nested": {"deep": [{"k": (None, True)}]}},
]


def _plain(value: object) -> object:
    """Our symbolic value in plain Python terms (our containers are already plain)."""
    assert not isinstance(value, (Call, Global, BytesRef))
    return value


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
@pytest.mark.parametrize("value", DATA_VALUES, ids=range(len(DATA_VALUES)))
def test_data_pickles_match_cpython(protocol: int, value: object) -> None:
    data = pickle.dumps(value, protocol=protocol)
    result = run_pickle(data)
    assert result.ok, result.error
    assert _plain(result.value) == pickle.loads(data)
    assert result.end == len(data)


@pytest.mark.parametrize("protocol", [3, 4, 5])
def test_bytes_sets_and_bytearrays(protocol: int) -> None:
    value = [b"\x00\xff" * 3, b"y" * 5000] + ([{1, 2}, frozenset({3})] if protocol >= 4 else [])
    data = pickle.dumps(value, protocol=protocol)
    result = run_pickle(data)
    assert result.ok
    assert result.value[0] == value[0]
    assert isinstance(result.value[1], BytesRef) and result.value[1].length == 5000   # long bytes stay in place
    if protocol >= 4:
        assert result.value[2:] == value[2:]


@pytest.mark.parametrize("line, expected", [
    (b"I0x10\n.", 16), (b"I010\n.", 8), (b"I00\n.", False), (b"I01\n.", True), (b"I-0x1f\n.", -31),
    (b"I 12\n.", 12), (b"I99999999999999999999999\n.", 99999999999999999999999), (b"L0x10L\n.", 16),
    (b"L12L\n.", 12), (b"I7\x00junk\n.", 7),
])
def test_int_and_long_parse_like_cpython(line: bytes, expected: object) -> None:
    assert pickle.loads(line) == expected          # the CPython reference
    result = run_pickle(line)
    assert result.ok and result.value == expected and type(result.value) is type(expected)


def test_hex_int_is_a_reported_differential() -> None:
    result = run_pickle(b"I0x10\n.")
    assert [a.kind for a in result.anomalies] == ["differential"]
    assert run_pickle(b"I16\n.").anomalies == []


def test_c_strtol() -> None:
    assert c_strtol(b"0x1F\n") == (31, 4)
    assert c_strtol(b"017\n") == (15, 3)
    assert c_strtol(b"abc") == (0, 0)
    assert c_strtol(b"99999999999999999999\n")[0] is None


def _frame_straddle(callable_global: bytes, arg: bytes) -> bytes:
    """Bytes mode reads the string 'Aabcdefghi' and stops; file mode skips the frame tail and calls a global."""
    after = (b"abcdefghi." + b"0" + b"c" + callable_global + b"X" + struct.pack("<I", len(arg)) + arg + b"\x85R.")
    return b"\x80\x04\x95" + struct.pack("<Q", 3) + b"\x8c\x0aA" + after


def test_frame_straddle_matches_both_cpython_readings() -> None:
    data = _frame_straddle(b"builtins\nstr\n", b"x")
    assert pickle.loads(data) == "Aabcdefghi"                 # byte string: frames are only an availability check
    assert pickle.load(io.BytesIO(data)) == "x"               # file without peek (torch.load's BytesIO)
    assert run_pickle(data, file_mode=False).value == "Aabcdefghi"
    file_value = run_pickle(data, file_mode=True).value
    assert isinstance(file_value, Call) and render(file_value) == "builtins.str('x')"


def test_frame_straddle_hidden_call_is_found_and_reported() -> None:
    result = scan_pickle(_frame_straddle(b"os\nsystem\n", b"touch x"))
    assert "os.system('touch x')" in [render(c) for c in result.calls]
    assert any(a.kind == "differential" for a in result.anomalies)


def test_short_frame_is_a_differential_not_an_error() -> None:
    data = b"\x80\x04\x95" + struct.pack("<Q", 50) + b"\x8c\x02nt\x94\x8c\x06system\x94\x93."
    result = run_pickle(data)
    assert result.ok and isinstance(result.value, Global) and result.value.qualname == "nt.system"
    assert any("FRAME declares 50" in a.message for a in result.anomalies)


def test_ext_code_is_unresolved_unless_registered() -> None:
    data = b"\x80\x02\x82\x07)R."
    with pytest.raises(ValueError):
        pickle.loads(data)                                    # CPython: unregistered extension code
    result = run_pickle(data)
    assert isinstance(result.value, Call) and isinstance(result.value.func, ExtRef)
    assert [a.kind for a in result.anomalies] == ["ext"]
    registered = (b"\x80\x02ccopyreg\nadd_extension\n(X\x02\x00\x00\x00osX\x06\x00\x00\x00systemK\x07tR0"
                  b"\x82\x07X\x02\x00\x00\x00id\x85R.")
    result = run_pickle(registered)
    assert render(result.value) == "os.system('id')"


def test_stack_global_needs_strings_and_dynamic_operands_are_reported() -> None:
    assert "requires str" in run_pickle(b"\x80\x04K\x01K\x02\x93.").error
    dynamic = b"\x80\x04cbuiltins\nstr\n)R\x8c\x01x\x93."
    result = run_pickle(dynamic)
    assert isinstance(result.value, DynamicGlobal)
    assert [a.kind for a in result.anomalies] == ["dynamic-global"]


def test_build_on_a_global_is_a_mutation() -> None:
    result = run_pickle(b"\x80\x02ctorch\n_utils\n}X\x01\x00\x00\x00aK\x01sb.")
    assert [a.kind for a in result.anomalies] == ["global-mutation"]


def test_mark_fences_the_stack_like_c() -> None:
    result = run_pickle(b"K\x01(0.")           # POP pops the mark, then STOP pops 1
    assert result.ok and result.value == 1
    assert "underflow" in run_pickle(b"(R.").error


def test_memo_get_missing_is_an_error_after_recording_earlier_calls() -> None:
    result = run_pickle(b"cos\nsystem\nX\x02\x00\x00\x00id\x85R0h\x05.")
    assert not result.ok and "memo" in result.error
    assert [render(c) for c in result.calls] == ["os.system('id')"]


def test_stacked_pickles_and_trailing_garbage() -> None:
    data = pickle.dumps([1]) + pickle.dumps({"a": 2}) + b"\xffjunk"
    results, stopped = scan_stream(data)
    assert [r.value for r in results[:2]] == [[1], {"a": 2}]
    assert not results[2].ok and results[2].error_pos == results[2].start


@pytest.mark.parametrize("data, limits, message", [
    (b"(" + b"K\x01" * 100 + b"l.", Limits(max_opcodes=50), "opcodes"),
    (b"]" + b"K\x01\x94" * 100 + b".", Limits(max_memo=10), "memo"),
    (b"K\x01" * 100 + b".", Limits(max_stack=10), "stack"),
    (b"(" * 200_000 + b".", Limits(), "MARK nesting"),
    (b"\x8b\xff\xff\xff\x00" + b".", Limits(), "integer"),
    (b"I" + b"1" * 70_000 + b"\n.", Limits(), "INT literal"),
])
def test_limits_end_the_run_with_a_limit_anomaly(data: bytes, limits: Limits, message: str) -> None:
    result = run_pickle(data, limits=limits)
    assert not result.ok and message in result.error
    assert [a.kind for a in result.anomalies] == ["limit", "recovered"]


def test_deep_nesting_never_recurses() -> None:
    data = b"]" * 300_000 + b"a" * 299_999 + b"."
    result = run_pickle(data)
    assert result.ok
    assert render(result.value).startswith("[[[")


def test_declared_allocation_is_reported() -> None:
    data = b"c__builtin__\nbytearray\n(\x8a\x06\x00\x00\x00\x00\x00\x01tR."
    result = run_pickle(data)
    assert render(result.value) == "builtins.bytearray(1099511627776)"   # py2 names normalised
    assert [a.kind for a in result.anomalies] == ["allocation"]


def test_huge_declared_string_is_an_error_not_an_allocation() -> None:
    result = run_pickle(b"\x8e" + struct.pack("<Q", 2**40) + b"abc.")
    assert not result.ok and "exceeds the remaining data" in result.error


def test_out_of_band_buffer_is_read_like_cpython_with_buffers_and_reported() -> None:
    data = b"\x80\x05\x97\x98."
    assert pickle.loads(data, buffers=[b"x"]) == b"x"
    result = run_pickle(data)
    assert result.ok and isinstance(result.value, OutOfBandBuffer)
    assert [a.kind for a in result.anomalies] == ["out-of-band"]


def test_inst_obj_newobj_and_newobj_ex_are_calls() -> None:
    inst = run_pickle(b"(X\x01\x00\x00\x00aios\nsystem\n.")
    assert render(inst.value) == "os.system('a')"
    obj = run_pickle(b"(cos\nsystem\nX\x01\x00\x00\x00bo.")
    assert render(obj.value) == "os.system('b')"
    newobj_ex = run_pickle(b"\x80\x04cmod\nK\n)}X\x01\x00\x00\x00kK\x01s\x92.")
    assert render(newobj_ex.value) == "mod.K(k=1)"


def test_render_is_bounded() -> None:
    value = run_pickle(pickle.dumps([list(range(50))] * 3)).value
    assert len(render(value)) <= 160


# --------------------------------------------------------------------------------------------------------------
# No early stop: a linear scan reads on after an error or a limit (attack samples first)
# --------------------------------------------------------------------------------------------------------------

def _call_reduce(module: bytes, name: bytes, arg: bytes) -> bytes:
    return b"c" + module + b"\n" + name + b"\n(X" + struct.pack("<I", len(arg)) + arg + b"tR"


# empty APPENDS on an int, BUILD(None) on an int, then the call: CPython runs it, the old machine refused the prefix
ODD_PREFIX_THEN_SYSTEM = b"K\x01(e0K\x02Nb0" + _call_reduce(b"os", b"system", b"id") + b"."
SYSTEM_THEN_BAD_OPCODE = _call_reduce(b"posix", b"system", b"id") + b"\xff" + b"garbage"
POPEN_AFTER_UNDERFLOW = b"\x80\x02K\x01s" + _call_reduce(b"subprocess", b"Popen", b"id") + b"."


def _su(text: bytes) -> bytes:
    return b"\x8c" + bytes([len(text)]) + text


def _stack_global_attack() -> bytes:
    """A bad byte, then subprocess.Popen through STACK_GLOBAL with memoised operands, fetched again by GET."""
    return (b"\x80\x04N\xfe" + _su(b"subprocess") + b"\x94" + _su(b"Popen") + b"\x94\x93\x8c\x02id\x85R0"
            + b"h\x00h\x01\x93)R.")


def test_odd_but_legal_prefix_no_longer_stops_the_machine() -> None:
    result = run_pickle(ODD_PREFIX_THEN_SYSTEM)
    assert result.ok, result.error
    assert [render(c) for c in result.calls] == ["os.system('id')"]


def test_call_before_a_bad_opcode_is_kept_and_the_rest_is_scanned() -> None:
    result = run_pickle(SYSTEM_THEN_BAD_OPCODE)
    assert not result.ok and "invalid load key" in result.error
    assert [render(c) for c in result.calls] == ["posix.system('id')"]
    assert result.recovered_from == len(SYSTEM_THEN_BAD_OPCODE) - len(b"\xffgarbage")


def test_call_after_an_error_is_found_by_the_recovery_scan() -> None:
    result = run_pickle(POPEN_AFTER_UNDERFLOW)
    assert not result.ok and "underflow" in result.error
    scanned = [(u.ref.qualname, u.from_scan) for u in result.globals]
    assert scanned == [("subprocess.Popen", True)]
    assert [(render(c), c.opcode, c.from_scan) for c in result.calls] == [("subprocess.Popen(...)", "REDUCE", True)]


def test_recovery_scan_follows_stack_global_operands_through_the_memo() -> None:
    result = run_pickle(_stack_global_attack())
    assert not result.ok
    assert [u.ref.qualname for u in result.globals] == ["subprocess.Popen", "subprocess.Popen"]
    assert {render(c) for c in result.calls} == {"subprocess.Popen(...)"}


def test_recovery_scan_reads_past_an_opcode_limit_and_is_bounded() -> None:
    data = b"N0" * 2_000 + _call_reduce(b"os", b"system", b"id") + b"."
    result = run_pickle(data, limits=Limits(max_opcodes=1_000))
    assert "opcodes" in result.error
    assert [render(c) for c in result.calls] == ["os.system(...)"]
    bounded = run_pickle(data, limits=Limits(max_opcodes=1_000, max_scan_steps=100))
    assert bounded.calls == [] and [a.kind for a in bounded.anomalies] == ["limit", "limit", "recovered"]


def test_recovery_scan_ignores_names_that_are_not_identifiers() -> None:
    result = run_pickle(b"\xff" + b"c\x00\x01\n\x02\n" + b"cnot a name\nx y\n")
    assert result.globals == [] and result.calls == []


def test_later_stacked_pickle_after_a_broken_one_is_scanned() -> None:
    data = pickle.dumps([1]) + b"K\x01s" + pickle.dumps(2)[:-1] + _call_reduce(b"os", b"system", b"x") + b"."
    results, _ = scan_stream(data)
    assert [render(c) for r in results for c in r.calls] == ["os.system(...)"]


@pytest.mark.parametrize("payload, call, verified", [
    (ODD_PREFIX_THEN_SYSTEM, "os.system", True),
    (SYSTEM_THEN_BAD_OPCODE, "posix.system", False),
    (POPEN_AFTER_UNDERFLOW, "subprocess.Popen", False),
    (_stack_global_attack(), "subprocess.Popen", False),
])
def test_audit_fails_with_a_critical_finding_on_payloads_around_errors(runner, tmp_path, payload: bytes,
                                                                        call: str, verified: bool) -> None:
    from tests.conftest import invoke_json

    target = tmp_path / "model.pkl"
    target.write_bytes(payload)
    code, report = invoke_json(runner, "audit", target)
    findings = [f for file in report["files"] for f in file.get("findings", [])] + report.get("findings", [])
    critical = [f for f in findings if f["severity"] == "critical" and call in f["message"]]
    assert code == 1 and {f["rule_id"] for f in critical} == {"WA401"}, findings
    assert report["files"][0]["verified"] is verified


# --------------------------------------------------------------------------------------------------------------
# Cost (issue 10): deep nesting, memo graphs with exponentially many paths, opcode floods
# --------------------------------------------------------------------------------------------------------------

DEPTH = 200_000


def _torch_zip(path: Any, data_pkl: bytes) -> Any:
    """A torch.save-shaped archive around a hand-built data.pkl (no tensors needed)."""
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", data_pkl)
        archive.writestr("archive/byteorder", "little")
        archive.writestr("archive/.data/version", "3\n")
    return path


def _deep_dicts(depth: int) -> bytes:
    """{'a': {'a': {... 'a': 1}}}: the dotted names of a walker that copies prefixes grow to depth**2 bytes."""
    return b"\x80\x02" + b"}U\x01a" * depth + b"K\x01" + b"s" * depth + b"."


def _memo_graph(levels: int) -> bytes:
    """Each level is a list holding the previous level twice (by memo): 2**levels paths, linear size."""
    out = bytearray(b"\x80\x02]q\x00")
    for level in range(1, levels + 1):
        out += b"]h" + bytes([level - 1]) + b"h" + bytes([level - 1]) + b"\x86aq" + bytes([level])
    return bytes(out + b".")


@pytest.mark.parametrize("data", [
    b"]" * DEPTH + b"a" * (DEPTH - 1) + b".",
    b"}" + b"U\x01k}" * (DEPTH - 1) + b"s" * (DEPTH - 1) + b".",
    _deep_dicts(DEPTH),
])
def test_deep_nesting_runs_and_renders_without_recursion(data: bytes) -> None:
    result = run_pickle(data)
    assert result.ok, result.error
    assert len(render(result.value)) <= 160


def test_deep_tuple_chain_is_a_limit_not_a_crash() -> None:
    """Hashing a tuple nested 200,000 deep recurses in C without a guard (CPython segfaults)."""
    data = b")" + b"\x85" * DEPTH + b"}\x8c\x01k" + b")" + b"\x85" * DEPTH + b"K\x01s."
    result = run_pickle(data)
    assert "tuples nested more than 1000 deep" in result.error
    assert [a.kind for a in result.anomalies] == ["limit", "recovered"]


@pytest.mark.parametrize("data, finding, verified", [
    (_deep_dicts(DEPTH), None, True),
    (_memo_graph(60), None, True),
    (b"\x80\x02" + b")" + b"\x85" * DEPTH + b".", "WA405", False),
])
def test_costly_shapes_in_a_torch_zip_give_a_report(runner, tmp_path, data: bytes, finding: str | None,
                                                    verified: bool) -> None:
    from tests.conftest import invoke_json

    target = _torch_zip(tmp_path / "model.pt", data)
    code, report = invoke_json(runner, "audit", target, "--no-stats")
    rules = {f["rule_id"] for f in report["findings"]}
    assert "internal error" not in str(report).lower()
    assert report["files"][0]["verified"] is verified, report["files"][0]
    if finding:
        assert finding in rules and code in (1, 3)


def test_opcode_flood_is_bounded_by_a_named_limit(tmp_path) -> None:
    from weightaudit.formats import LoadOptions
    from weightaudit.formats.raw_pickle import RawPickleLoader

    target = tmp_path / "flood.pkl"
    target.write_bytes(b"N0" * 50_000 + b"N.")
    loaded = RawPickleLoader().load(target, "flood.pkl", LoadOptions(max_pickle_opcodes=10_000))
    assert not loaded.verified
    assert [f.rule_id for f in loaded.findings if f.rule_id == "WA405"] == ["WA405"]


def test_chains_of_calls_render_without_recursion() -> None:
    result = run_pickle(b"cbuiltins\nset\n" + b")R" * DEPTH + b".")
    assert result.ok and render(result.value).endswith("(...)()()()")


def test_parameter_wrapped_20000_times_is_a_problem_not_a_recursion_error(runner, tmp_path) -> None:
    from tests.conftest import invoke_json

    depth = 20_000                      # far past Python's recursion limit (1,000)
    data = b"\x80\x02}U\x01w" + b"ctorch._utils\n_rebuild_parameter\n" * depth + b"N" + b"\x85R" * depth + b"s."
    target = _torch_zip(tmp_path / "model.pt", data)
    code, report = invoke_json(runner, "audit", target, "--no-stats")
    assert "recursion" not in str(report).lower()
    assert report["files"][0]["status"] == "ok" and code in (0, 1, 3)


def test_recovery_scan_reports_inst_and_protocol_0_memo_strings() -> None:
    data = b"K\x01s" + b"(S'id'\nios\nsystem\n" + b"Vsubprocess\np7\n0VPopen\np8\n0g7\ng8\n\x93)R."
    result = run_pickle(data)
    assert [(u.ref.qualname, u.opcode) for u in result.globals] == [("os.system", "INST"),
                                                                     ("subprocess.Popen", "STACK_GLOBAL")]
    assert [(render(c), c.opcode) for c in result.calls] == [("os.system(...)", "INST"),
                                                             ("subprocess.Popen(...)", "REDUCE")]


def test_broken_hidden_member_in_a_torch_zip_is_reported_and_unverified(runner, tmp_path) -> None:
    import zipfile

    from tests.conftest import invoke_json

    target = _torch_zip(tmp_path / "model.pt", pickle.dumps({"a": 1}, protocol=2))
    with zipfile.ZipFile(target, "a") as archive:
        archive.writestr("archive/extra.pkl", POPEN_AFTER_UNDERFLOW)
    code, report = invoke_json(runner, "audit", target, "--no-stats")
    critical = [f for f in report["findings"] if f["rule_id"] == "WA401" and "subprocess.Popen" in f["message"]]
    assert code == 1 and critical
    assert report["files"][0]["verified"] is False


def test_repr_of_a_deep_chain_of_calls_is_bounded() -> None:
    result = run_pickle(b"cbuiltins\nset\n" + b")R" * DEPTH + b".")
    assert repr(result.value) == "<Call ...(...)(...)(...)()()()>"
