"""WA401–WA422: code-execution risk of pickles. Definitions only; :mod:`weightaudit.rules.pickle_rules` raises them.

The verdict is an allowlist (``weightaudit/data/pickle_allowlist.yaml``): what a pickle imports or calls outside it
is high (WA403), critical when ``weightaudit/data/pickle_dangerous.yaml`` knows it runs code, touches files,
processes or the network (WA401/WA402/WA417). A user's policy extends the allowlist (``pickle: {allow: [...]}``).
"""

from __future__ import annotations

from weightaudit.model import Severity
from weightaudit.rules import rule_family

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


_ALLOWLIST_DOC = (
    "\n\nThe allowlist: weightaudit/data/pickle_allowlist.yaml (in the installed package) lists every global a "
    "weights file may import or call, each with the reason it only builds data and the real checkpoint that needs "
    "it (torch rebuild functions, storage and dtype tags, collections.OrderedDict, numpy _reconstruct/dtype/scalar, "
    "_codecs.encode with latin1, ...). Schema: allow: [{name|names, kind: function|class|constant, reason, needed_by, "
    "optional arg_values: {index: [allowed constants]}}] and "
    "data_containers: [{name|names, kind: class|enum, reason, needed_by}] (reviewed ML-library record classes such "
    "as transformers TrainingArguments, argparse.Namespace, Lightning AttributeDict, omegaconf DictConfig: WA418). "
    "weightaudit/data/pickle_dangerous.yaml lists the categories that make a global critical (run-code, processes, "
    "files, network, loaders, import-side-effects), dangerous method names at the end of an attribute chain, and "
    "dunder walkers. Dotted names are resolved as CPython's find_class does (import the module, then one getattr "
    "per dotted part), so pathlib + os.system is judged as os.system; protocol<3 names are judged both as written "
    "and after _compat_pickle renaming.\n\nExtending it: a user's policy file (--policy, or the policy weightaudit "
    "finds for the run; never a file inside the audited release) may add its own data classes:\n"
    "  pickle:\n    allow:\n      - name: mypkg.config.TrainConfig\n        reason: \"our reviewed dataclass\"\n"
    "        kind: class          # function | class | constant (default class)\n"
    "        container: true      # optional: keep it medium (WA418) instead of silent\n"
    "Each use of a policy entry is reported as WA420 (info), so the report shows what the policy allowed. A policy "
    "cannot allow a global of pickle_dangerous.yaml (the policy file is refused, exit 2)."
)


DANGEROUS_CALL = _code_rule(
    "WA401", "dangerous-call", "The pickle calls a callable that can run code, touch files or reach the network.",
    Severity.CRITICAL,
    "A REDUCE/NEWOBJ/INST/OBJ opcode calls a global that pickle_dangerous.yaml knows runs code, spawns processes, "
    "touches files, reaches the network, loads other files or walks attributes (os/posix/nt, subprocess, builtins "
    "eval/exec/getattr/__import__, runpy, marshal, importlib, pdb, timeit, cProfile, socket, urllib, shutil, "
    "numpy.save, torch.save/torch.load, torch._inductor, ...), reached directly or through an attribute chain "
    "(pathlib.os.system). Loading the file runs that call; the finding shows it as reconstructed." + _ALLOWLIST_DOC)
DANGEROUS_IMPORT = _code_rule(
    "WA402", "dangerous-import", "The pickle imports a known-dangerous global or module without calling it directly.",
    Severity.HIGH,
    "The global is imported when the file loads and can be reached indirectly (through BUILD or SETITEM on an "
    "object, as a default factory, by code that uses the loaded object). A module with import side effects "
    "(antigravity, this, idlelib, ...) runs as soon as it is imported: critical. No weights file needs it."
    + _ALLOWLIST_DOC)
UNKNOWN_GLOBAL = _code_rule(
    "WA403", "unknown-global", "The pickle imports or calls a global outside the pickle allowlist.", Severity.HIGH,
    "Anything not on the allowlist is high, so new gadgets fail closed in the exit code: unpickling imports the "
    "module (running its import-time code) and calls what the file chooses. Pickled whole nn.Module objects, "
    "custom classes, training-script objects and whole-module imports land here: they need that code to load "
    "and torch.load with weights_only=True refuses them. If the class is your own reviewed data class, allow it "
    "in your policy (below) rather than ignoring the rule." + _ALLOWLIST_DOC)
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
    "callback, a config loader) runs it. Raw, hex- and base64-encoded pickles, also gzip/zlib/xz/bz2-compressed "
    "(bounded), are decoded and scanned, up to four pickles deep.")
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
TRAMPOLINE_ARGUMENT = _code_rule(
    "WA417", "callable-argument", "A callable that is not allowlisted is handed to another call as an argument.",
    Severity.HIGH,
    "Allowlisted functions can be trampolines: copyreg._reconstructor calls its base class, _rebuild_tensor_v2 "
    "installs backward hooks, defaultdict calls its factory, numpy's RNG constructors call the constructor they are "
    "given, and any unknown callee may call what it receives. A global handed over as an argument is judged like a "
    "call: critical when it is known to run code, touch files, processes or the network (OrderedDict(os.system), "
    "functools.partial(os.system, ...)), high otherwise." + _ALLOWLIST_DOC)
DATA_CONTAINER = _code_rule(
    "WA418", "data-container", "The pickle builds an object of a reviewed ML-library data-container class.",
    Severity.MEDIUM,
    "Hyper-parameter and config records (transformers TrainingArguments, argparse.Namespace, Lightning "
    "AttributeDict, omegaconf DictConfig, string enums) are plain data, but loading them needs "
    "weights_only=False and imports and runs that library's code, so they are reported, never silent. They stay "
    "medium only when built the way their writers build them (NEWOBJ and BUILD, copyreg._reconstructor, or an "
    "enum looked up by one constant value); a REDUCE that calls the class with chosen arguments, or a function "
    "from the same library, is high (WA403)." + _ALLOWLIST_DOC, confidence="medium", cwe=502)
ALLOCATION_BOMB = _code_rule(
    "WA419", "allocation-bomb", "An allowlisted call would allocate or compute something very large.",
    Severity.MEDIUM,
    "Allowlisted callables still do work proportional to their arguments: range/set/frozenset/bytearray/bytes "
    "sizes, numpy _reconstruct shapes, big integers, decimals and fractions parsed from giant strings (or with "
    "giant exponents) and repeat counts — including a tensor view whose strides repeat a few storage bytes "
    "billions of times (torch.ones(1).expand(10**6, 10**6) saved as a view: REPEAT_LIMIT_BYTES, 2**30, and above "
    "it the view is not streamed for statistics). Medium with the size above BOMB_NOTABLE_UNITS (2**24 units) or "
    "BOMB_NOTABLE_DIGITS (4300 digits, CPython's int_max_str_digits); high above BOMB_LIMIT_UNITS (2**30 units), "
    "BOMB_LIMIT_DIGITS (100000 digits) or a Decimal/Fraction exponent above BOMB_LIMIT_EXPONENT (10**6).", cwe=400)
POLICY_ALLOWED = _code_rule(
    "WA420", "policy-allowed-global", "A global outside the built-in allowlist was allowed by the user's policy.",
    Severity.INFO,
    "The policy's pickle.allow list names this global with a reason; the finding records which entry allowed it "
    "so the report shows everything the policy waived." + _ALLOWLIST_DOC, confidence="high", cwe=None)
