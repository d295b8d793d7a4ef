"""Keras names for HDF5 datasets, from the scanned paths (hdf5_read.scan_file); attributes are read per Keras
layer, never per dataset.

Layouts: legacy full model (``model_config`` + ``model_weights`` with ``layer_names``/``weight_names``,
``optimizer_weights``), legacy weights-only (``layer_names`` on the root), the Keras 3 store
(``layers/<auto>/vars/<i>`` mapped back to real layer names through the ``vars`` ``name`` attribute and
per-class variable names), or plain HDF5 (dataset paths).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import h5py

from weightaudit.formats import hdf5_read
from weightaudit.formats.hdf5_read import Scan, attr_list, read_attr, text
from weightaudit.model import Finding, Role
from weightaudit.rules import get_rule

KERAS3_VARIABLE_NAMES: dict[str, tuple[str, ...]] = {
    "dense": ("kernel", "bias"), "einsum_dense": ("kernel", "bias"),
    "conv1d": ("kernel", "bias"), "conv2d": ("kernel", "bias"), "conv3d": ("kernel", "bias"),
    "conv1d_transpose": ("kernel", "bias"), "conv2d_transpose": ("kernel", "bias"),
    "conv3d_transpose": ("kernel", "bias"), "depthwise_conv1d": ("kernel", "bias"),
    "depthwise_conv2d": ("kernel", "bias"), "separable_conv1d": ("depthwise_kernel", "pointwise_kernel", "bias"),
    "separable_conv2d": ("depthwise_kernel", "pointwise_kernel", "bias"),
    "batch_normalization": ("gamma", "beta", "moving_mean", "moving_variance"),
    "layer_normalization": ("gamma", "beta"), "group_normalization": ("gamma", "beta"),
    "embedding": ("embeddings",), "p_re_lu": ("alpha",),
    "simple_rnn_cell": ("kernel", "recurrent_kernel", "bias"), "lstm_cell": ("kernel", "recurrent_kernel", "bias"),
    "gru_cell": ("kernel", "recurrent_kernel", "bias"),
}
def legacy_tensor_name(layer: str, weight_name: str) -> str:
    """``dense_1`` + ``seq/dense_1/kernel:0`` or ``dense_1_1/kernel:0`` -> ``dense_1/kernel``."""
    parts = [p for p in weight_name.removesuffix(":0").split("/") if p]
    if layer in parts:
        parts = parts[parts.index(layer) + 1:]
    elif parts and re.fullmatch(re.escape(layer) + r"_\d+", parts[0]):
        parts = parts[1:]
    return "/".join([layer, *parts])


def keras3_variable_names(token: str, count: int) -> tuple[str, ...]:
    """Names of a Keras 3 layer's ``vars/0..n-1`` from its auto-name token (``dense_3`` -> Dense)."""
    names = KERAS3_VARIABLE_NAMES.get(re.sub(r"_\d+$", "", token), ())
    if len(names) == count:
        return names
    if count == len(names) - 1 and names and names[-1] == "bias":
        return names[:-1]
    return tuple(str(i) for i in range(count))


# ---------------------------------------------------------------- naming the datasets

@dataclass
class Naming:
    """HDF5 dataset path -> (tensor name, role); plus problems found while naming."""

    names: dict[str, tuple[str, Role]] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    layout: str = "hdf5"
    scan: Scan = field(default_factory=Scan)


def _name_legacy_group(group: h5py.Group, prefix: str, layers: list[str], naming: Naming, rel: str) -> None:
    stored = naming.scan.dataset_set
    for layer in layers:
        layer_group = group.get(layer)
        if not isinstance(layer_group, h5py.Group):
            naming.findings.append(get_rule("WA170").finding(rel, f"layer group {layer!r} listed in layer_names "
                                                             "is missing", where=f"{prefix}{layer}"))
            continue
        for weight in attr_list(layer_group, "weight_names") or []:
            path = f"{prefix}{layer}/{weight}"
            if path in stored:
                naming.names[path] = (legacy_tensor_name(layer, weight), Role.PARAMETER)
            elif not isinstance(layer_group.get(weight), h5py.Dataset):
                naming.findings.append(get_rule("WA170").finding(rel, f"weight {weight!r} of layer {layer!r} is "
                                                                 "not stored", where=path))


def _name_optimizer(group: h5py.Group, prefix: str, naming: Naming) -> None:
    stored = naming.scan.dataset_set
    for weight in attr_list(group, "weight_names") or []:
        if f"{prefix}{weight}" in stored:
            naming.names[f"{prefix}{weight}"] = (weight.removesuffix(":0"), Role.OPTIMIZER)


class _Keras3Names:
    """Display names of Keras 3 store objects, from the scanned paths (one attribute read per object)."""

    def __init__(self, handle: h5py.File, scan: Scan) -> None:
        self.handle, self.scan = handle, scan
        self.cache: dict[str, str] = {}

    def vars_name(self, group_path: str, token: str) -> str:
        key = f"{group_path}/vars" if group_path else "vars"
        if key not in self.cache:
            holder = self.handle.get(key) if key in self.scan.groups else None
            found = holder is not None and "name" in holder.attrs
            self.cache[key] = text(read_attr(holder, "name")) if found else token
        return self.cache[key]

    def display(self, object_path: str) -> tuple[str, str, Role]:
        """(display name, last token, role) of the object whose group is ``object_path``."""
        parts = object_path.split("/") if object_path else []
        shown: list[str] = []
        walked: list[str] = []
        expect_sub = False
        for part in parts:
            walked.append(part)
            if part == "vars" and not expect_sub:
                return "", "", Role.PARAMETER       # datasets deeper inside a vars group keep their paths
            if part == "layers" and not expect_sub:
                expect_sub = True
                continue
            expect_sub = False
            shown.append(self.vars_name("/".join(walked), part))
        role = Role.OPTIMIZER if parts and parts[0] == "optimizer" else Role.PARAMETER
        return "/".join(s for s in shown if s), (parts[-1] if parts else ""), role


def _sort_key(key: str) -> tuple[bool, int, str]:
    return (not key.isdigit(), int(key) if key.isdigit() and len(key) < 19 else 0, key)


def _name_keras3(handle: h5py.File, naming: Naming) -> None:
    holders: dict[str, list[str]] = {}
    for path in naming.scan.datasets:
        parent, _, key = path.rpartition("/")
        if parent == "vars" or parent.endswith("/vars"):
            holders.setdefault(parent, []).append(key)
    names = _Keras3Names(handle, naming.scan)
    root_name = names.vars_name("", "")
    for holder, keys in holders.items():
        object_path = holder[:-len("/vars")] if holder != "vars" else ""
        display, token, role = names.display(object_path)
        if object_path and not display and not token:
            continue
        keys.sort(key=_sort_key)
        labels = keras3_variable_names(token, len(keys)) if all(k.isdigit() for k in keys) else tuple(keys)
        for key, label in zip(keys, labels):
            name = f"{display}/{label}" if display else label
            if not object_path and root_name:
                name = f"{root_name}/{name}"
            naming.names[f"{holder}/{key}"] = (name, role)


def name_datasets(handle: h5py.File, rel: str, scan: Scan | None = None) -> Naming:
    """Recognise the Keras layout and name the datasets it describes."""
    naming = Naming(scan=scan if scan is not None else hdf5_read.scan_file(handle))
    if "model_config" in handle.attrs or "model_weights" in naming.scan.groups:
        naming.layout = "keras-legacy-full"
        if "model_weights" in naming.scan.groups:
            weights = handle["model_weights"]
            _name_legacy_group(weights, "model_weights/", attr_list(weights, "layer_names") or [], naming, rel)
        if "optimizer_weights" in naming.scan.groups:
            _name_optimizer(handle["optimizer_weights"], "optimizer_weights/", naming)
    elif attr_list(handle, "layer_names") is not None:
        naming.layout = "keras-legacy-weights"
        _name_legacy_group(handle, "", attr_list(handle, "layer_names") or [], naming, rel)
    elif "layers" in naming.scan.groups or "vars" in naming.scan.groups:
        naming.layout = "keras3-store"
        _name_keras3(handle, naming)
    return naming
