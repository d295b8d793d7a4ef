"""WA401–WA429 (pickle / PyTorch code execution) and WA140–WA159 (PyTorch container integrity).

All of these are raised by the pickle-family loaders while they parse (``check`` is None). The policy is
default-deny: a global is *allowed* only when it is in :data:`ALLOWED_GLOBALS` (what a weights file
legitimately needs), *denied* when it matches :data:`DENIED` (a callable that can run code, touch files or the
network, or load another pickle), and *unknown* otherwise — unknown globals are reported at ``medium`` so new
gadgets fail closed.

Public helpers used by ``formats/torch_pickle.py``:

- :func:`classify_global` — ``"allowed" | "denied" | "unknown"`` for a (module, name) pair;
- :func:`pickle_findings` — every WA4xx finding for one :class:`~weightaudit.formats.pickle_vm.PickleResult`;
- :func:`weights_only_problems` — why ``torch.load with weights_only=True`` would refuse the pickles (empty = accepts);
- :func:`executing_calls` — the calls ``weights_only=False`` would make outside torch's own rebuild functions.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Iterable

from weightaudit.formats.pickle_vm import (
    BytesRef, Call, DynamicGlobal, ExtRef, Global, Limits, PickleResult, render, scan_stream,
)
from weightaudit.model import Finding, Severity
from weightaudit.rules import rule_family

# --------------------------------------------------------------------------------------------------------------
# Allowlist: exact (module, name) pairs a weights file needs
# --------------------------------------------------------------------------------------------------------------

_TORCH_DTYPES = (
    "float32 float float64 double float16 half bfloat16 int64 long int32 int int16 short int8 uint8 uint16 "
    "uint32 uint64 bool complex32 chalf complex64 cfloat complex128 cdouble float8_e4m3fn float8_e5m2 "
    "float8_e4m3fnuz float8_e5m2fnuz float8_e8m0fnu float4_e2m1fn_x2 qint8 quint8 qint32 quint4x2 quint2x4 "
    "bits1x8 bits2x4 bits4x2 bits8 bits16 uint1 uint2 uint3 uint4 uint5 uint6 uint7 int1 int2 int3 int4 int5 "
    "int6 int7"
).split()
_TORCH_STORAGES = (
    "FloatStorage DoubleStorage HalfStorage BFloat16Storage LongStorage IntStorage ShortStorage CharStorage "
    "ByteStorage BoolStorage ComplexFloatStorage ComplexDoubleStorage QInt8Storage QUInt8Storage QInt32Storage "
    "QUInt4x2Storage QUInt2x4Storage UntypedStorage TypedStorage"
).split()
_TORCH_REBUILD = (
    "_rebuild_tensor _rebuild_tensor_v2 _rebuild_tensor_v3 _rebuild_parameter _rebuild_parameter_with_state "
    "_rebuild_qtensor _rebuild_sparse_tensor _rebuild_meta_tensor_no_storage _rebuild_nested_tensor "
    "_rebuild_wrapper_subclass _rebuild_device_tensor_from_numpy _rebuild_device_tensor_from_cpu_tensor"
).split()
_TORCH_MISC = (
    "Size Tensor device strided sparse_coo sparse_csr sparse_csc sparse_bsr sparse_bsc _mkldnn jagged "
    "per_tensor_affine per_channel_affine per_tensor_symmetric per_channel_symmetric "
    "per_channel_affine_float_qparams contiguous_format channels_last channels_last_3d preserve_format"
).split()

_TORCHSCRIPT_HELPERS = tuple(f"torch.jit._pickle.{n}" for n in (
    "build_intlist", "build_tensorlist", "build_doublelist", "build_boollist", "build_complexlist",
    "build_tensor_from_id", "restore_type_tag"))

ALLOWED_GLOBALS: frozenset[str] = frozenset(
    [f"torch.{d}" for d in _TORCH_DTYPES + _TORCH_STORAGES + _TORCH_MISC]
    + [f"torch.storage.{s}" for s in ("UntypedStorage", "TypedStorage", "_LegacyStorage")]
    + [f"torch._utils.{f}" for f in _TORCH_REBUILD]
    + [
        "torch._tensor._rebuild_from_type_v2", "torch.nn.parameter.Parameter", "torch.serialization._get_layout",
        "torch.torch_version.TorchVersion", "torch.nn.parameter.UninitializedParameter",
        "collections.OrderedDict", "collections.Counter", "collections.deque",
        "_codecs.encode", "builtins.bytearray", "builtins.set", "builtins.frozenset", "builtins.complex",
        "builtins.slice", "builtins.range", "builtins.object",
        *_TORCHSCRIPT_HELPERS,
        "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct", "numpy.ndarray",
        "numpy.dtype", "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar",
        "argparse.Namespace", "types.SimpleNamespace", "pathlib.PosixPath", "pathlib.WindowsPath",
        "pathlib.PurePosixPath", "pathlib.PureWindowsPath", "datetime.datetime", "datetime.date",
        "datetime.timedelta", "datetime.timezone", "decimal.Decimal", "fractions.Fraction", "uuid.UUID",
    ]
)

# What torch's own weights_only unpickler accepts (torch/_weights_only_unpickler.py, _get_allowed_globals).
WEIGHTS_ONLY_GLOBALS: frozenset[str] = frozenset(
    [f"torch.{d}" for d in _TORCH_DTYPES + _TORCH_STORAGES + _TORCH_MISC]
    + [f"torch.storage.{s}" for s in ("UntypedStorage", "TypedStorage")]
    + [f"torch._utils.{f}" for f in _TORCH_REBUILD]
    + ["torch._tensor._rebuild_from_type_v2", "torch.nn.parameter.Parameter", "torch.serialization._get_layout",
       "collections.OrderedDict", "collections.Counter", "_codecs.encode", "builtins.bytearray", "builtins.set",
       "builtins.complex", "torch.Tensor"]
)
WEIGHTS_ONLY_OPCODES: frozenset[str] = frozenset(
    "GLOBAL NEWOBJ REDUCE BUILD APPEND APPENDS SETITEM SETITEMS MARK TUPLE TUPLE1 TUPLE2 TUPLE3 NONE NEWTRUE "
    "NEWFALSE EMPTY_TUPLE EMPTY_LIST EMPTY_DICT EMPTY_SET BININT BININT1 BININT2 LONG1 BINFLOAT BINUNICODE "
    "SHORT_BINSTRING BINPERSID BINGET LONG_BINGET BINPUT LONG_BINPUT PROTO STOP".split()
)

# --------------------------------------------------------------------------------------------------------------
# Denylist: a prefix match on the dotted path (module.name); module entries cover every name and submodule
# --------------------------------------------------------------------------------------------------------------

DENIED: frozenset[str] = frozenset("""
os posix nt subprocess _posixsubprocess sys runpy marshal importlib pkgutil pip ensurepip venv site atexit
socket ssl http httplib urllib urllib2 urllib3 requests aiohttp ftplib smtplib imaplib poplib telnetlib nntplib
xmlrpc socketserver webbrowser mailcap ctypes _ctypes cffi multiprocessing threading _thread signal asyncio pty
pdb bdb code codeop cProfile profile timeit trace pydoc doctest idlelib lib2to3 distutils setuptools shutil
pickle _pickle cPickle dill cloudpickle joblib shelve dbm zipimport tarfile zipfile sqlite3 gc linecache glob
_osx_support _aix_support _pyrepl test _interpreters _xxsubinterpreters _winapi msvcrt winreg resource fcntl
tempfile commands popen2 platform _io.FileIO _io.open io.open io.FileIO codecs.open logging.FileHandler
logging.handlers logging.config builtins.eval builtins.exec builtins.compile builtins.open builtins.getattr
builtins.setattr builtins.delattr builtins.__import__ builtins.breakpoint builtins.input builtins.globals
builtins.locals builtins.vars builtins.apply builtins.execfile builtins.help builtins.exit builtins.quit
types.FunctionType types.CodeType types.LambdaType types.MethodType types.BuiltinFunctionType types.ModuleType
operator.attrgetter operator.itemgetter operator.methodcaller _operator.attrgetter _operator.itemgetter
_operator.methodcaller functools.partial functools.reduce functools.partialmethod copyreg.add_extension
uuid._get_command_stdout uuid._popen inspect ast.literal_eval
numpy.load numpy.loads numpy.f2py numpy.testing numpy.ctypeslib numpy.distutils numpy.lib.npyio
numpy.core.multiarray.loads pandas.read_pickle pandas.io.pickle
torch.load torch.serialization torch.hub torch.jit torch._dynamo torch._inductor torch.utils.bottleneck
torch.utils.collect_env torch.utils.data.datapipes torch.fx.experimental.symbolic_shapes torch.utils._config_module
torch._C._jit torch.package torch.storage._load_from_bytes torch.utils.cpp_extension torch.distributed.rpc
torch.multiprocessing torch._export torch.compile torch.ops torch._ops torch.classes torch.library
keras.utils.get_file keras.src.utils.file_utils transformers.dynamic_module_utils huggingface_hub
""".split())
# Names that are allowed even though a denied prefix covers them (none are callables that execute code).
_DENY_EXCEPTIONS: frozenset[str] = frozenset({"torch.serialization._get_layout", *_TORCHSCRIPT_HELPERS})


def _prefixes(dotted: str) -> Iterable[str]:
    parts = dotted.split(".")
    for i in range(1, len(parts) + 1):
        yield ".".join(parts[:i])


def _is_denied_path(dotted: str) -> bool:
    return dotted not in _DENY_EXCEPTIONS and any(p in DENIED for p in _prefixes(dotted))


def classify_global(module: str, name: str) -> str:
    """``"allowed"``, ``"denied"`` or ``"unknown"``.

    Denied when ``module.name`` or any attribute chain inside a dotted ``name`` (``pathlib`` + ``os.system``,
    ``torch`` + ``serialization.os.system``) reaches a denylisted module or callable. Allowed only by exact match.
    """
    qualname = f"{module}.{name}"
    if _is_denied_path(qualname):
        return "denied"
    name_parts = name.split(".")
    for i in range(1, len(name_parts)):
        if _is_denied_path(".".join(name_parts[i:])) or _is_denied_path(".".join(name_parts[i - 1:])):
            return "denied"
    if qualname in ALLOWED_GLOBALS:
        return "allowed"
    return "unknown"


def _classify_value(value: Any) -> str:
    """Classification of a callable value: globals by name; dynamic imports and EXT codes are denied."""
    if isinstance(value, Global):
        verdict = classify_global(value.module, value.name)
        if verdict != "denied" and (value.raw_module, value.raw_name) != (value.module, value.name) and value.raw_module:
            raw = classify_global(value.raw_module, value.raw_name)
            return "denied" if raw == "denied" else verdict
        return verdict
    if isinstance(value, (DynamicGlobal, ExtRef)):
        return "denied"
    if isinstance(value, Call):
        return _classify_value(value.func)
    return "unknown"


# --------------------------------------------------------------------------------------------------------------
# Rules
# --------------------------------------------------------------------------------------------------------------

_PICKLE_HELP = (
    "\n\nWhy it matters: unpickling a file (the pickle module, torch.load with weights_only=False, joblib.load, "
    "numpy.load with allow_pickle=True) imports every global the file names and calls every REDUCE/NEWOBJ/BUILD "
    "target with arguments the file chooses. A weights file needs nothing beyond torch's tensor-rebuild "
    "functions, storage types, dtypes and a few plain containers.\n\nWhat to do: do not load the file with "
    "pickle or torch.load with weights_only=False. Obtain the weights as safetensors, or re-export them from a "
    "trusted copy; if you must read this file, use torch.load with weights_only=True only after weightaudit reports "
    "it would be accepted."
)


_code_rule = rule_family(("code-execution", "pickle"), _PICKLE_HELP, default_cwe=502)


DANGEROUS_CALL = _code_rule(
    "WA401", "dangerous-call", "The pickle calls a callable that can run code, touch files or reach the network.",
    Severity.CRITICAL,
    "A REDUCE/NEWOBJ/INST/OBJ opcode calls a denylisted global (os/posix/nt, subprocess, builtins eval/exec/"
    "getattr/__import__, runpy, marshal, importlib, pip, socket, http, codecs.open, torch.load/torch.hub and the "
    "other nested loaders, ...). Loading the file runs that call; the finding shows it as reconstructed.")
DANGEROUS_IMPORT = _code_rule(
    "WA402", "dangerous-import", "The pickle imports a denylisted global without calling it directly.",
    Severity.HIGH,
    "The global is imported when the file loads and can be reached indirectly (as an argument to another "
    "call, through BUILD or SETITEM on an object, as a default factory). No weights file needs it.")
UNKNOWN_GLOBAL = _code_rule(
    "WA403", "unknown-global", "The pickle imports a global outside the weights allowlist.", Severity.MEDIUM,
    "Anything not on the explicit allowlist is reported, so new gadgets fail closed. Pickled whole nn.Module "
    "objects, custom classes and training-script objects (Lightning hyper-parameters, tokenizers) land here: "
    "they need that code to load and torch.load with weights_only=True refuses them.", confidence="medium")
PARSER_DIFFERENTIAL = _code_rule(
    "WA404", "parser-differential", "Parts of the pickle are read differently by CPython and by common scanners.",
    Severity.HIGH,
    "CPython's C unpickler parses INT/LONG with base-0 rules (I0x10 is 16, I010 is 8) and, reading from a file, "
    "drops the tail of a FRAME that an opcode straddles. pickletools-based scanners read such bytes differently, "
    "which is how payloads have been hidden from them. No writer produces these forms.", cwe=436)
LIMIT_EXCEEDED = _code_rule(
    "WA405", "pickle-limit", "The pickle exceeds a resource limit (opcodes, memo, stack, nesting, allocation).",
    Severity.HIGH,
    "weightaudit bounds opcode count, memo size, stack depth, MARK nesting, integer and declared allocation "
    "sizes (bytearray(2**40)). A file past these bounds is a denial-of-service attempt or not a weights file; "
    "the rest of it was not checked.", cwe=400)
EXT_CODE = _code_rule(
    "WA406", "extension-code", "The pickle uses an EXT opcode that the default copyreg registry cannot resolve.",
    Severity.HIGH,
    "EXT1/EXT2/EXT4 name a global through copyreg's extension registry, empty by default, so a plain load fails; "
    "in a process that registered codes (copyreg.add_extension) the code resolves to any global, invisible to "
    "name-based scanners.")
DYNAMIC_GLOBAL = _code_rule(
    "WA407", "dynamic-global", "STACK_GLOBAL imports a module or name computed at load time.", Severity.CRITICAL,
    "The module or attribute name is the result of another call or import rather than a constant string, so the "
    "file chooses what to import only while it loads. Only attacks build pickles this way.")
GLOBAL_MUTATION = _code_rule(
    "WA408", "global-mutation", "BUILD, SETITEM or APPEND modifies an imported module, class or function.",
    Severity.CRITICAL,
    "Applying BUILD/SETITEM/APPEND to an imported object overwrites its attributes (e.g. replacing "
    "torch._utils._rebuild_tensor with eval) so that a later, innocent-looking global runs attacker code.")
OBJECT_MUTATION = _code_rule(
    "WA409", "object-state-call", "BUILD, SETITEM or APPEND runs code on an object that is not allowlisted.",
    Severity.MEDIUM,
    "On anything but plain dicts/lists/sets and allowlisted tensor types these opcodes call the object's own "
    "__setstate__/__setitem__/append/extend/add methods.", confidence="medium")
WEIGHTS_ONLY_REFUSED = _code_rule(
    "WA410", "weights-only-refused", "torch.load with weights_only=True would refuse this file.", Severity.INFO,
    "torch's restricted unpickler accepts only a fixed set of opcodes (no FRAME, so no protocol 4 and 5), its "
    "allowlisted globals and storage persistent ids. The facts list the reasons. The file may still be benign; "
    "it just cannot be loaded the safe way.", cwe=None)
NESTED_PICKLE = _code_rule(
    "WA411", "nested-pickle", "A string or bytes constant holds another pickle that would run code if loaded.",
    Severity.MEDIUM,
    "The payload is dormant: loading this file does not unpickle it, but any code that later does (a plugin, a "
    "callback, a config loader) runs it. Raw, hex- and base64-encoded pickles are decoded and scanned one level "
    "deep.")
OUT_OF_BAND = _code_rule(
    "WA412", "out-of-band-buffer", "The pickle asks for protocol-5 out-of-band buffers.", Severity.MEDIUM,
    "NEXT_BUFFER takes data from outside the file; a weights file never does this and loaders without buffers "
    "fail on it.")
TORCHSCRIPT_CODE = _code_rule(
    "WA413", "torchscript-code", "The archive is a TorchScript program (code/ and constants.pkl).", Severity.MEDIUM,
    "torch.jit.load compiles and runs the TorchScript source in code/; torch.load with weights_only=True refuses "
    "the archive. Review the code or obtain plain weights.", cwe=94)
UNEXPECTED_PERSISTENT_ID = _code_rule(
    "WA414", "unexpected-persistent-id", "A persistent id is not a torch storage reference.", Severity.HIGH,
    "torch's persistent_load accepts ('storage', type, key, location, numel) tuples (and legacy 'module' "
    "records). Anything else is refused by torch or handled by custom loader code.", cwe=20)
TRAILING_PICKLE_DATA = _code_rule(
    "WA415", "trailing-data", "Bytes that are not a valid pickle follow the last pickle.", Severity.MEDIUM,
    "The pickle module stops at the first STOP and never reads them, but 'broken pickle' tricks put payloads before a "
    "deliberate error so that scanners give up. weightaudit checks everything before the error.", cwe=20)
OBJECT_ARRAY = _code_rule(
    "WA416", "numpy-object-array", "A NumPy array has dtype object: numpy.load needs allow_pickle=True.",
    Severity.LOW,
    "Object arrays are stored as a pickle; loading them with allow_pickle=True runs whatever that pickle calls "
    "(CVE-2019-6446). The pickle was scanned; numeric arrays do not need pickles.")


_integrity_rule = rule_family(
    ("integrity", "pytorch"),
    "\n\nWhat to do: re-save the checkpoint with torch.save from a trusted copy (or convert it to safetensors); "
    "do not load a tampered archive.")


ZIP_MALFORMED = _integrity_rule(
    "WA140", "zip-malformed", "The zip archive cannot be read (central directory or local headers broken).",
    Severity.HIGH, "torch reads checkpoints with miniz; a broken archive is refused or read differently.")
ZIP_DUPLICATE = _integrity_rule(
    "WA141", "zip-duplicate-member", "A member name appears twice in the zip archive.", Severity.MEDIUM,
    "torch and zipfile read the last copy; other tools may read the first. Both copies were scanned.", cwe=436)
ZIP_NAME_MISMATCH = _integrity_rule(
    "WA142", "zip-name-mismatch", "A member's local-header name differs from its central-directory name.",
    Severity.HIGH, "Python's zipfile refuses such members while torch (miniz) loads them: scanners built on "
    "zipfile gave up on them (CVE-2025-1944).", cwe=436)
ZIP_FLAGS = _integrity_rule(
    "WA143", "zip-flag-tampering", "A member sets zip flags (encryption, patched data) that torch ignores.",
    Severity.HIGH, "zipfile refuses members with the encryption (0x1), patch (0x20) or strong-encryption "
    "(0x40) bits while torch reads the bytes as stored (CVE-2025-1945).", cwe=436)
ZIP_CRC = _integrity_rule(
    "WA144", "zip-crc-mismatch", "A member's bytes do not match its CRC-32.", Severity.HIGH,
    "torch disables miniz's CRC check and loads the member; zipfile raises (CVE-2025-10156). A wrong CRC means the "
    "member was edited after the archive was written.", cwe=354)
STORAGE_SIZE = _integrity_rule(
    "WA145", "storage-size-mismatch", "A storage record's size differs from its declared element count.",
    Severity.HIGH, "torch computes nbytes = numel * element_size from the pickle and reads that many bytes; a "
    "mismatch was behind CVE-2026-24747 (memory corruption in torch < 2.10).", cwe=787)
TENSOR_OUT_OF_BOUNDS = _integrity_rule(
    "WA146", "tensor-out-of-bounds", "A tensor's offset, size and stride reach outside its storage.",
    Severity.HIGH, "A view that extends past its storage reads or writes out of bounds in loaders that trust it.",
    cwe=125)
MISSING_RECORD = _integrity_rule(
    "WA147", "missing-storage", "A tensor refers to a storage record that is not in the file.", Severity.HIGH,
    "torch.load fails on this file; the tensor's bytes cannot be checked.")
ORPHAN_RECORD = _integrity_rule(
    "WA148", "orphan-record", "A data record is not referenced by any tensor.", Severity.LOW,
    "torch.save never writes unreferenced records; extra data can smuggle content past reviewers.")
PATH_TRAVERSAL = _integrity_rule(
    "WA149", "zip-path-traversal", "A member name is absolute or climbs out of the archive with '..'.",
    Severity.HIGH, "Extracting the archive writes outside the target folder.", cwe=22)
HIDDEN_PICKLE = _integrity_rule(
    "WA150", "hidden-pickle", "A member that torch does not read holds a pickle.", Severity.MEDIUM,
    "A pickle stored under another name (data.txt, config.json, a second data.pkl) is invisible to tools that "
    "select members by name (CVE-2025-1889); it was scanned here.")
COMPRESSED_RECORD = _integrity_rule(
    "WA151", "compressed-record", "A tensor record is compressed, so it cannot be memory-mapped.", Severity.LOW,
    "torch.save stores records uncompressed and 64-byte aligned; a re-zipped checkpoint loads slower and needs "
    "the whole record in memory.", cwe=None)
TORCH_LAYOUT = _integrity_rule(
    "WA152", "torch-layout", "The archive does not follow torch's layout, so torch.load would refuse it.",
    Severity.MEDIUM, "torch requires every member under one top-level folder, a data.pkl, a known byteorder "
    "('little'/'big') and a supported version record.")
ENCRYPTED_MEMBER = _integrity_rule(
    "WA153", "encrypted-member", "An archive member is encrypted and could not be checked.", Severity.MEDIUM,
    "Encrypted content cannot be scanned; the file is reported as not verified.")
LEGACY_LAYOUT = _integrity_rule(
    "WA154", "legacy-layout", "A legacy (pre-1.6) torch file deviates from the stream layout torch expects.",
    Severity.HIGH, "The legacy format is magic number, protocol 1001, sys_info, the object, the sorted storage "
    "keys, then each storage as int64 count plus bytes. Extra or missing parts are read differently by "
    "different loaders.")
UNSUPPORTED_TENSOR = _integrity_rule(
    "WA155", "unsupported-tensor", "A tensor kind could not be inventoried (quantized, sparse, nested, subclass).",
    Severity.LOW, "The tensor is rebuilt by a torch function weightaudit does not model yet; its bytes were not "
    "checked.", cwe=None)


# --------------------------------------------------------------------------------------------------------------
# Findings for one pickle
# --------------------------------------------------------------------------------------------------------------

_ANOMALY_RULES = {"differential": PARSER_DIFFERENTIAL, "limit": LIMIT_EXCEEDED, "allocation": LIMIT_EXCEEDED,
                  "ext": EXT_CODE, "dynamic-global": DYNAMIC_GLOBAL, "global-mutation": GLOBAL_MUTATION,
                  "out-of-band": OUT_OF_BAND}


def pickle_findings(result: PickleResult, path: str, where_prefix: str, offset_base: int = 0,
                    data: bytes | memoryview | None = None, scan_nested: bool = True) -> list[Finding]:
    """WA401–WA409, WA411 and WA412 findings for one pickle.

    ``where_prefix`` names the member or pickle (``"archive/data.pkl"``); byte offsets are reported relative
    to the member plus ``offset_base``. ``data`` (the buffer the pickle was read from) enables the nested
    pickle check.
    """
    findings: list[Finding] = []

    def where(pos: int, opcode: str) -> str:
        return f"{where_prefix} byte {pos + offset_base} ({opcode})"

    called: set[str] = set()
    for call in result.calls:
        verdict = _classify_value(call.func)
        label = _callable_label(call.func)
        if verdict == "denied":
            findings.append(DANGEROUS_CALL.finding(path, f"calls {render(call)}", where=where(call.pos, call.opcode)))
            called.add(label)
        elif verdict == "unknown":
            findings.append(UNKNOWN_GLOBAL.finding(path, f"calls {render(call)} ({label} is not allowlisted)",
                                                   where=where(call.pos, call.opcode)))
            called.add(label)
    reported: set[str] = set(called)
    for use in result.globals:
        label = use.ref.qualname
        if label in reported:
            continue
        reported.add(label)
        verdict = _classify_value(use.ref)
        if verdict == "denied":
            findings.append(DANGEROUS_IMPORT.finding(path, f"imports {label}", where=where(use.pos, use.opcode)))
        elif verdict == "unknown":
            findings.append(UNKNOWN_GLOBAL.finding(path, f"imports {label} (not allowlisted)",
                                                   where=where(use.pos, use.opcode)))
    seen_anomalies: set[tuple[str, int]] = set()
    for anomaly in result.anomalies:
        rule = _ANOMALY_RULES.get(anomaly.kind)
        if rule is None or (anomaly.kind, anomaly.pos) in seen_anomalies:
            continue
        seen_anomalies.add((anomaly.kind, anomaly.pos))
        findings.append(rule.finding(path, anomaly.message, where=where(anomaly.pos, anomaly.kind)))
    findings.extend(_mutation_findings(result, path, where))
    if scan_nested and data is not None:
        findings.extend(_nested_pickle_findings(result, path, where, data))
    return findings


def _callable_label(func: Any) -> str:
    if isinstance(func, Global):
        return func.qualname
    return render(func, depth=1)


def _mutation_findings(result: PickleResult, path: str, where: Any) -> list[Finding]:
    findings = []
    reported: set[str] = set()
    for mutation in result.mutations:
        target = mutation.target
        if not isinstance(target, Call):
            continue
        label = _callable_label(target.func)
        if _classify_value(target.func) == "allowed" or label in reported:
            continue
        reported.add(label)
        findings.append(OBJECT_MUTATION.finding(
            path, f"{mutation.opcode} on the result of {render(target, depth=1)} runs its own methods",
            where=where(mutation.pos, mutation.opcode)))
    return findings


MAX_NESTED_DEPTH = 4   # pickles inside pickles inside pickles...: multi-stage payloads, bounded


def _nested_pickle_findings(result: PickleResult, path: str, where: Any, data: bytes | memoryview) -> list[Finding]:
    findings = []
    for pos, value in result.byte_strings[:10_000]:
        found = _nested_payload(value, data, 1)
        if found is not None:
            call, depth = found
            levels = "" if depth == 1 else f" ({depth} pickles deep)"
            findings.append(NESTED_PICKLE.finding(path, f"a constant holds a pickle{levels} that would run {call}",
                                                  where=where(pos, "constant")))
    return findings


def _nested_payload(value: Any, data: bytes | memoryview, depth: int) -> tuple[str, int] | None:
    """(the first call a pickle hidden in this constant would make, how deep it sits), searching pickles
    inside pickles up to MAX_NESTED_DEPTH levels; None when there is none."""
    for payload in _decoded_candidates(value, data):
        inner, _ = scan_stream(payload, limits=Limits(max_opcodes=100_000))
        bad = [render(c) for r in inner for c in r.calls if _classify_value(c.func) != "allowed"]
        bad += [u.ref.qualname for r in inner for u in r.globals if _classify_value(u.ref) == "denied"]
        if bad:
            return bad[0], depth
        if depth < MAX_NESTED_DEPTH:
            for r in inner:
                for _, deeper in r.byte_strings[:1_000]:
                    found = _nested_payload(deeper, payload, depth + 1)
                    if found is not None:
                        return found
    return None


def _decoded_candidates(value: Any, data: bytes | memoryview) -> list[bytes]:
    """Raw, hex and base64 decodings of a constant that look like a protocol 2-5 pickle."""
    if isinstance(value, BytesRef):
        if value.length > 1 << 20:
            return []
        raw = bytes(data[value.offset:value.offset + value.length])
        value = raw.decode("utf-8", "replace") if value.kind == "str" else raw
    if isinstance(value, bytearray):
        value = bytes(value)
    candidates: list[bytes] = []
    if isinstance(value, bytes):
        candidates.append(value)
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            value = ""
    if isinstance(value, str) and len(value) >= 8:
        text = value.strip()
        candidates.append(text.encode("latin-1", "ignore"))
        for decode in (bytes.fromhex, lambda s: base64.b64decode(s, validate=True)):
            try:
                candidates.append(decode(text))
            except (ValueError, binascii.Error):
                continue
    return [c for c in candidates if len(c) >= 4 and c[0] == 0x80 and 2 <= c[1] <= 5]


# --------------------------------------------------------------------------------------------------------------
# What torch would do
# --------------------------------------------------------------------------------------------------------------


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


def executing_calls(results: Iterable[PickleResult]) -> list[str]:
    """Calls that plain unpickling would make beyond torch's own tensor-rebuild machinery (rendered)."""
    calls = []
    for result in results:
        for call in result.calls:
            if _classify_value(call.func) != "allowed":
                calls.append(render(call))
        for use in result.globals:
            if _classify_value(use.ref) != "allowed":
                calls.append(f"import {use.ref.qualname}")
    return list(dict.fromkeys(calls))
