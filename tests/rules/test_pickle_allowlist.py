"""The pickle allowlist verdict, enforced by the exit code (issue 9, causes 1 and 7).

Attack samples are built opcode by opcode (tests/rules/pickle_builders.py) from the techniques of public
picklescan, fickling and ModelAudit advisories (2024-2026) — never by pickling dangerous objects, and nothing
here is ever unpickled. Each goes through ``weightaudit audit`` and must exit 1 with a high or critical finding
that names the call and where it is.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import invoke
from tests.rules.pickle_builders import (
    call, dct, glob, lst, newobj, num, pkl, raw_bytes, sglob, text, tup,
)
from weightaudit.rules.pickle_allowlist import builtin_allowlist, danger_table, policy_entries
from weightaudit.rules.pickle_rules import classify_global

OS_SYSTEM = glob("os", "system")
CMD = text("id")

# (id, pickle bytes, rule, severity, text the message must contain)
ATTACKS = [
    # --- os reached through an alias attribute of an innocent module (protocol 4 dotted names)
    ("pathlib-os-alias", pkl(call(sglob("pathlib", "os.system"), CMD), 4), "WA401", "critical", "pathlib.os.system"),
    ("torch-serialization-os", pkl(call(sglob("torch", "serialization.os.system"), CMD), 4), "WA401", "critical",
     "torch.serialization.os.system"),
    ("numpy-testing-os", pkl(call(sglob("numpy.testing._private.utils", "os.system"), CMD), 4), "WA401",
     "critical", "utils.os.system"),
    ("module-attribute-os", pkl(call(sglob("numpy.testing._private.utils", "os"), CMD), 4), "WA401", "critical",
     "utils.os"),
    ("numpy-runstring", pkl(call(glob("numpy.testing._private.utils", "runstring"), text("import os"), dct())),
     "WA401", "critical", "runstring"),
    # --- generic attribute walkers
    ("getattr-import", pkl(call(call(glob("builtins", "getattr"), call(glob("builtins", "__import__"), text("os")),
                                     text("system")), CMD)), "WA401", "critical", "builtins.getattr"),
    ("attrgetter", pkl(call(call(glob("operator", "attrgetter"), text("system")),
                            call(glob("importlib", "import_module"), text("os")))), "WA401", "critical",
     "operator.attrgetter"),
    ("sys-modules-walk", pkl(call(glob("_operator", "getitem"), glob("sys", "modules"), text("os"))), "WA401",
     "critical", "_operator.getitem"),
    ("subclasses-walker", pkl(call(sglob("builtins", "object.__subclasses__")), 4), "WA401", "critical",
     "__subclasses__"),
    # --- stdlib helpers that compile or exec source
    ("timeit", pkl(call(glob("timeit", "timeit"), text("__import__('os').system('id')"), num(1))), "WA401",
     "critical", "timeit.timeit"),
    ("cprofile-run", pkl(call(glob("cProfile", "run"), text("print(1)"))), "WA401", "critical", "cProfile.run"),
    ("pdb-run", pkl(call(glob("pdb", "run"), text("print(1)"))), "WA401", "critical", "pdb.run"),
    ("bdb-runctx", pkl(call(sglob("bdb", "Bdb.runctx"), text("x"), dct(), dct()), 4), "WA401", "critical",
     "bdb.Bdb.runctx"),
    ("code-interpreter", pkl(call(sglob("code", "InteractiveInterpreter.runsource"),
                                  call(sglob("code", "InteractiveInterpreter")), text("print(1)")), 4),
     "WA401", "critical", "InteractiveInterpreter"),
    ("idlelib-eval", pkl(call(sglob("idlelib.autocomplete", "AutoComplete.get_entity"), text("x")), 4), "WA401",
     "critical", "idlelib"),
    ("pydoc-pipepager", pkl(call(glob("pydoc", "pipepager"), text("x"), text("id"))), "WA401", "critical",
     "pydoc.pipepager"),
    ("lib2to3-grammar", pkl(call(sglob("lib2to3.pgen2.grammar", "Grammar.load"), text("/tmp/x")), 4), "WA401",
     "critical", "lib2to3"),
    ("ensurepip", pkl(call(glob("ensurepip", "_run_pip"), lst(text("install"), text("evil")))), "WA401", "critical",
     "ensurepip._run_pip"),
    ("f2py-myeval", pkl(call(glob("numpy.f2py.crackfortran", "myeval"), text("1"))), "WA401", "critical",
     "numpy.f2py"),
    # --- ML-library functions that exec generated code
    ("fx-exec-with-source", pkl(call(glob("torch.fx.graph_module", "_exec_with_source"), text("x=1"), dct())),
     "WA401", "critical", "_exec_with_source"),
    ("inductor-codecache", pkl(call(sglob("torch._inductor.codecache", "PyCodeCache.load"), text("x=1")), 4),
     "WA401", "critical", "torch._inductor"),
    ("config-module", pkl(call(sglob("torch.utils._config_module", "ConfigModule.load_config"), raw_bytes(b"x")), 4),
     "WA401", "critical", "_config_module"),
    ("hf-dynamic-module", pkl(call(glob("transformers.dynamic_module_utils", "get_class_from_dynamic_module"),
                                   text("evil.Model"), text("evil/repo"))), "WA401", "critical",
     "dynamic_module_utils"),
    # --- importers and loaders of other files
    ("import-module", pkl(call(glob("importlib", "import_module"), text("os"))), "WA401", "critical",
     "importlib.import_module"),
    ("pkgutil-resolve", pkl(call(call(glob("pkgutil", "resolve_name"), text("os:system")), CMD)), "WA401",
     "critical", "pkgutil.resolve_name"),
    ("runpy", pkl(call(glob("runpy", "run_path"), text("/tmp/x.py"))), "WA401", "critical", "runpy.run_path"),
    ("torch-load", pkl(call(glob("torch", "load"), text("/tmp/second_stage.pt"))), "WA401", "critical",
     "torch.load"),
    ("numpy-load", pkl(call(glob("numpy", "load"), text("/tmp/x.npy"))), "WA401", "critical", "numpy.load"),
    ("storage-load-from-bytes", pkl(call(glob("torch.storage", "_load_from_bytes"), raw_bytes(b"PK"))), "WA401",
     "critical", "_load_from_bytes"),
    ("joblib-load", pkl(call(glob("joblib", "load"), text("/tmp/x.joblib"))), "WA401", "critical", "joblib.load"),
    ("mailcap", pkl(call(glob("mailcap", "findmatch"), dct(), text("x"))), "WA401", "critical", "mailcap"),
    ("pickle-loads", pkl(call(glob("pickle", "loads"), raw_bytes(b"\x80\x02N."))), "WA401", "critical",
     "pickle.loads"),
    # --- file writers and deleters (stdlib, numpy, torch)
    ("shutil-rmtree", pkl(call(glob("shutil", "rmtree"), text("/tmp/victim"))), "WA401", "critical",
     "shutil.rmtree"),
    ("numpy-save", pkl(call(glob("numpy", "save"), text("/tmp/x"), num(1))), "WA401", "critical", "numpy.save"),
    ("ndarray-tofile", pkl(call(sglob("numpy", "ndarray.tofile"), text("a"), text("/tmp/x")), 4), "WA401",
     "critical", "ndarray.tofile"),
    ("torch-save", pkl(call(glob("torch", "save"), dct(), text("/tmp/x"))), "WA401", "critical", "torch.save"),
    ("path-write-text", pkl(call(sglob("pathlib", "Path.write_text"), call(sglob("pathlib", "Path"), text("/tmp/x")),
                                 text("pwned")), 4), "WA401", "critical", "Path.write_text"),
    ("builtins-open", pkl(call(glob("builtins", "open"), text("/tmp/x"), text("w"))), "WA401", "critical",
     "builtins.open"),
    # --- sockets, URL fetchers
    ("socket-connect", pkl(call(glob("socket", "create_connection"), tup(text("127.0.0.1"), num(4444)))), "WA401",
     "critical", "socket.create_connection"),
    ("urlopen", pkl(call(glob("urllib.request", "urlopen"), text("http://127.0.0.1/x"))), "WA401", "critical",
     "urllib.request.urlopen"),
    ("http-client", pkl(call(glob("http.client", "HTTPConnection"), text("127.0.0.1"))), "WA401", "critical",
     "http.client"),
    # --- process spawners
    ("os-system", pkl(call(OS_SYSTEM, CMD)), "WA401", "critical", "os.system('id')"),
    ("asyncio-subprocess", pkl(call(glob("asyncio.subprocess", "create_subprocess_shell"), CMD)), "WA401",
     "critical", "asyncio.subprocess"),
    ("posixsubprocess", pkl(call(glob("_posixsubprocess", "fork_exec"), lst(text("id")))), "WA401", "critical",
     "_posixsubprocess.fork_exec"),
    ("inst-protocol-0", b"(S'id'\nios\nsystem\n.", "WA401", "critical", "os.system('id')"),
    ("compat-name", b"\x80\x02c__builtin__\neval\nX\x01\x00\x00\x001\x85R.", "WA401", "critical", "builtins.eval"),
    # --- a dangerous function handed to an allowlisted trampoline
    ("ordereddict-fed", pkl(call(glob("collections", "OrderedDict"), lst(tup(text("k"), OS_SYSTEM)))), "WA417",
     "critical", "os.system"),
    ("set-fed", pkl(call(glob("builtins", "set"), lst(OS_SYSTEM))), "WA417", "critical", "os.system"),
    ("rebuild-hooks", pkl(call(glob("torch._utils", "_rebuild_tensor_v2"), text("s"), num(0), tup(), tup(),
                               b"\x89", call(glob("collections", "OrderedDict"), lst(tup(num(0), OS_SYSTEM))))),
     "WA417", "critical", "os.system"),
    ("functools-partial", pkl(call(call(glob("functools", "partial"), OS_SYSTEM, CMD))), "WA417", "critical",
     "os.system"),
    ("defaultdict-factory", pkl(call(glob("collections", "defaultdict"), glob("subprocess", "getoutput"))), "WA417",
     "critical", "subprocess.getoutput"),
    ("reconstructor-base", pkl(call(glob("copyreg", "_reconstructor"), glob("argparse", "Namespace"),
                                    glob("subprocess", "Popen"), lst(text("id")))), "WA417", "critical",
     "subprocess.Popen"),
    ("randomstate-ctor", pkl(call(glob("numpy.random._pickle", "__randomstate_ctor"), text("id"), OS_SYSTEM)),
     "WA417", "critical", "os.system"),
    ("unknown-callable-arg", pkl(call(glob("builtins", "set"), lst(glob("mylib", "hook")))), "WA417", "high",
     "mylib.hook"),
    # --- modules with import side effects, whole-module imports, innocent-looking unknown code
    ("antigravity", pkl(glob("antigravity", "webbrowser")), "WA402", "critical", "antigravity"),
    ("this", pkl(glob("this", "s")), "WA402", "critical", "this.s"),
    ("whole-module", pkl(glob("torch", "serialization")), "WA402", "high", "torch.serialization"),
    ("unknown-function", pkl(call(glob("mylib.utils", "helper"), num(1))), "WA403", "high", "mylib.utils.helper"),
    ("container-reduce", pkl(call(glob("transformers.training_args", "TrainingArguments"), text("out"))), "WA403",
     "high", "TrainingArguments"),
    ("codecs-other-codec", pkl(call(glob("_codecs", "encode"), text("x"), text("evil_codec"))), "WA403", "high",
     "_codecs.encode"),
    ("library-function", pkl(call(glob("transformers.trainer_utils", "set_seed"), num(1))), "WA403", "high",
     "set_seed"),
    # --- bombs from allowlisted callables (cause 7)
    ("bytearray-bomb", pkl(call(glob("builtins", "bytearray"), num(2**31))), "WA419", "high", "2147483648"),
    ("set-range-bomb", pkl(call(glob("builtins", "set"), call(glob("builtins", "range"), num(10**10)))), "WA419",
     "high", "10000000000"),
    ("decimal-digits", pkl(call(glob("decimal", "Decimal"), text("9" * 10**6))), "WA419", "high", "1000000"),
    ("decimal-exponent", pkl(call(glob("decimal", "Decimal"), text("1e999999999"))), "WA419", "high", "999999999"),
    ("fraction-exponent", pkl(call(glob("fractions", "Fraction"), text("1e200000000"))), "WA419", "high",
     "200000000"),
    ("reconstruct-shape", pkl(call(glob("numpy._core.multiarray", "_reconstruct"), glob("numpy", "ndarray"),
                                   tup(num(10**6), num(10**6)), raw_bytes(b"b"))), "WA419", "high", "1000000000000"),
]


def _audit(runner, path: Path, *extra: str) -> tuple[int, list[dict]]:
    result = invoke(runner, "audit", path, "--no-stats", "-q", "-f", "json", *extra)
    assert "Traceback" not in result.stderr
    return result.exit_code, json.loads(result.stdout)["findings"]


@pytest.mark.parametrize("name, data, rule, severity, names", ATTACKS, ids=[a[0] for a in ATTACKS])
def test_attack_fails_the_audit(runner, tmp_path: Path, name: str, data: bytes, rule: str, severity: str,
                                names: str) -> None:
    path = tmp_path / f"{name}.pkl"
    path.write_bytes(data)
    code, findings = _audit(runner, path)
    assert code == 1, findings
    hits = [f for f in findings if f["rule_id"] == rule and f["severity"] == severity]
    assert hits, [(f["rule_id"], f["severity"], f["message"]) for f in findings]
    assert any(names in f["message"] and " byte " in (f["where"] or "") for f in hits), hits


def test_medium_bomb_reports_the_size_without_failing(runner, tmp_path: Path) -> None:
    path = tmp_path / "int.pkl"
    path.write_bytes(pkl(call(glob("builtins", "int"), text("9" * 5000))))
    code, findings = _audit(runner, path)
    assert code == 0
    assert [(f["rule_id"], f["severity"]) for f in findings if f["rule_id"] != "WA410"] == [("WA419", "medium")]
    assert "5000-character" in findings[0]["message"] or "5000-character" in findings[-1]["message"]


def test_small_values_from_allowlisted_callables_are_silent(runner, tmp_path: Path) -> None:
    path = tmp_path / "small.pkl"
    path.write_bytes(pkl(lst(call(glob("builtins", "set"), call(glob("builtins", "range"), num(10))),
                             call(glob("decimal", "Decimal"), text("1.5e3")),
                             call(glob("builtins", "bytearray"), num(16)))))
    code, findings = _audit(runner, path)
    assert code == 0 and [f["rule_id"] for f in findings if f["severity"] != "info"] == []


def test_policy_allows_a_users_data_class(runner, tmp_path: Path) -> None:
    release = tmp_path / "release"
    release.mkdir()
    (release / "cfg.pkl").write_bytes(pkl(newobj(glob("mypkg.config", "TrainConfig")) + dct() + b"b"))
    code, findings = _audit(runner, release / "cfg.pkl")
    assert code == 1 and {f["rule_id"] for f in findings} >= {"WA403"}
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\npickle:\n  allow:\n    - name: mypkg.config.TrainConfig\n"
                      "      reason: our reviewed dataclass\n")
    code, findings = _audit(runner, release / "cfg.pkl", "--policy", policy)
    assert code == 0, findings
    assert [(f["rule_id"], f["severity"]) for f in findings if f["rule_id"] != "WA410"] == [("WA420", "info")]
    assert "our reviewed dataclass" in findings[0]["message"] or "our reviewed dataclass" in findings[-1]["message"]


def test_policy_cannot_allow_a_dangerous_callable_as_a_side_effect() -> None:
    entries = policy_entries([{"name": "mypkg.Config", "reason": "ok"}], "p.yaml")
    assert classify_global("os", "system", entries) == "denied"
    assert classify_global("mypkg", "Config", entries) == "allowed"
    with pytest.raises(ValueError, match="reason"):
        policy_entries([{"name": "mypkg.Config"}], "p.yaml")
    with pytest.raises(ValueError, match="cannot allow"):
        policy_entries([{"name": "os.system", "reason": "trust me"}], "p.yaml")
    kept_medium = policy_entries([{"name": "mypkg.Record", "reason": "reviewed", "container": True}], "p.yaml")
    assert classify_global("mypkg", "Record", kept_medium) == "container"


def test_allowlist_table_is_documented() -> None:
    for entry in builtin_allowlist().entries.values():
        assert entry.reason.strip() and entry.needed_by.strip() and "." in entry.name
    assert {c.category for c in danger_table().categories} >= {"run-code", "processes", "files", "network", "loaders"}


@pytest.mark.parametrize("rule_id", ["WA401", "WA402", "WA403", "WA417", "WA418"])
def test_rules_explain_documents_the_allowlists_and_the_policy_extension(runner, rule_id: str) -> None:
    result = invoke(runner, "rules", "explain", rule_id)
    assert result.exit_code == 0
    for needle in ("weightaudit/data/pickle_allowlist.yaml", "weightaudit/data/pickle_dangerous.yaml",
                   "kind: function|class|constant", "needed_by", "pickle:\n    allow:", "reason:", "WA420"):
        assert needle in result.stdout, needle


def test_hostile_shapes_are_judged_in_bounded_work(tmp_path: Path) -> None:
    """A million-part attribute chain, sized calls nested thousands deep and one big list handed to many calls."""
    from weightaudit.formats.pickle_vm import scan_stream
    from weightaudit.rules.pickle_rules import pickle_findings

    assert classify_global("builtins", "a." * 500_000 + "b") == "denied"
    nested = call(glob("builtins", "range"), num(10**10))
    for _ in range(3000):
        nested = call(glob("builtins", "set"), nested)
    shared = lst(*[glob("mylib", "hook")] + [num(i) for i in range(20_000)]) + b"q\x00"
    many = shared + b"".join(glob("builtins", "set") + b"h\x00\x85R0" for _ in range(2_000))
    for body in (nested, many):
        (result,), _ = scan_stream(pkl(body))
        assert result.ok, result.error
        findings = pickle_findings(result, "x.pkl", "x.pkl")
        assert any(f.rule_id in ("WA417", "WA419") for f in findings)


def test_policy_that_allows_a_dangerous_global_is_a_usage_error(runner, tmp_path: Path) -> None:
    target = tmp_path / "x.pkl"
    target.write_bytes(pkl(call(OS_SYSTEM, CMD)))
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\npickle:\n  allow:\n    - name: os.system\n      reason: trust me\n")
    result = invoke(runner, "audit", target, "--policy", policy, "-q")
    assert result.exit_code == 2 and "cannot allow" in result.stderr


def test_repeated_view_bomb_is_high_and_never_streamed(runner, tmp_path: Path) -> None:
    """torch.ones(1).expand(10**6, 10**6) saved as a view: 4 TB to materialise from 4 bytes (a repeat count)."""
    torch = pytest.importorskip("torch")
    path = tmp_path / "expand.pt"
    torch.save({"w": torch.ones(1).expand(10**6, 10**6), "ok": torch.arange(4.0).expand(2, 4)}, path)
    code, findings = _audit(runner, path)
    bombs = [f for f in findings if f["rule_id"] == "WA419"]
    assert code in (1, 3) and [(f["severity"], f["tensor"]) for f in bombs] == [("high", "w")]
    assert "1000000000000 elements" in bombs[0]["message"]
