"""WA190–WA195: integrity of ONNX models and their external data; WA448–WA449: operator domains that need
code (or a particular runtime) on the loading side. Raised by the ONNX loader (weightaudit/formats/onnx.py).
"""

from __future__ import annotations

from weightaudit.model import Severity
from weightaudit.rules import rule_family

_FORMAT_HELP = (
    "An ONNX model is one protobuf message (onnx.proto ModelProto): a graph of nodes, its initializers "
    "(TensorProto: dims, data_type, and the values in raw_data, in a typed field such as float_data, or in an "
    "external file named by external_data 'location', 'offset' and 'length' relative to the model's folder), "
    "the operator sets it imports and optional model-local functions. weightaudit reads the wire format "
    "itself; nothing from the model is executed and the onnx package is not used."
)

_integrity = rule_family(
    ("integrity", "onnx"),
    f"\n\n{_FORMAT_HELP}\n\nWhat to do: re-export the model from trusted weights (torch.onnx.export, "
    "onnx.save with save_as_external_data=True for big models) and audit it again.")
_code = rule_family(
    ("code", "onnx"),
    f"\n\n{_FORMAT_HELP}\n\nWhat to do: run the model only with the runtime and operator libraries you "
    "already trust; do not install an operator library because a model asks for it. Allowed domains are "
    "listed in weightaudit/data/onnx_domains.yaml.", default_cwe=94)


MALFORMED = _integrity(
    "WA190", "onnx-malformed", "The ONNX protobuf cannot be read as a ModelProto.", Severity.HIGH,
    "A field has the wrong wire type, a length runs past its message, the file is larger than protobuf's 2 GiB "
    "message limit, or a required part is missing. onnx.load and ONNX Runtime refuse such a file or read it "
    "differently from this audit; the rest of the file was not checked.")
EXTERNAL_ESCAPES = _integrity(
    "WA191", "onnx-external-data-escapes", "An external-data location leaves the model's folder.", Severity.HIGH,
    "ONNX external data names a file relative to the folder of the .onnx file. An absolute path, a path with "
    "'..' or a symbolic link that leads outside that folder makes the loader read an arbitrary file of the "
    "machine (a /etc/passwd or a private key turned into 'weights', or a device that never ends). The file "
    "is not opened and the tensor is not verified.", cwe=22)
EXTERNAL_MISSING = _integrity(
    "WA192", "onnx-external-data-missing", "An external-data file is missing, unreadable or too short.",
    Severity.HIGH,
    "The tensor's bytes are said to be in another file of the release, but that file is absent (often a "
    "partial download: the .onnx file without its .onnx.data), not a regular file, or shorter than offset + "
    "length. The tensor could not be checked.")
DATA_MISMATCH = _integrity(
    "WA193", "onnx-tensor-data-mismatch", "A tensor's data does not match its shape and type.", Severity.HIGH,
    "The number of bytes (raw_data, external length) or of values (typed fields) differs from what dims and "
    "data_type require, the data type is unknown, or the values are stored in two places at once. onnx.load "
    "refuses the tensor or different readers see different values: a parser differential.", cwe=436)
DUPLICATE_NAME = _integrity(
    "WA194", "onnx-duplicate-tensor-name", "Two initializers of one graph have the same name.", Severity.HIGH,
    "The ONNX checker refuses duplicate initializer names; runtimes that accept them keep one of the two, so "
    "different tools run different weights. Only the first one is inventoried.", cwe=436)

CUSTOM_DOMAIN = _code(
    "WA448", "onnx-custom-op-domain", "Nodes use an operator domain no standard runtime implements.",
    Severity.MEDIUM,
    "A node in a domain outside the ONNX standard (and outside ONNX Runtime's built-in domains) can only run "
    "after a custom-operator library is registered: native code shipped by the model's publisher or a third "
    "party, executed with your privileges when the session is created.")
RUNTIME_DOMAIN = _code(
    "WA449", "onnx-runtime-specific-domain", "Nodes use operators built into one runtime (ONNX Runtime contrib).",
    Severity.LOW,
    "Operators in com.microsoft (and ONNX Runtime's other built-in domains) are compiled into ONNX Runtime, so "
    "no extra code is loaded, but the model only runs there and the operators are outside the ONNX standard.")
