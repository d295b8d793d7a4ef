"""GGUF data-section layout checks, as llama.cpp lays tensors out: alignment, bounds, overlaps, order, unused bytes.

Each check reads the parsed header (``gguf._Parse``: tensors with data offsets and sizes, the alignment, where
the data section starts) and adds its findings to it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from weightaudit.model import Severity
from weightaudit.rules import gguf_rules as G

if TYPE_CHECKING:
    from weightaudit.formats.gguf import _Parse


def show(text: str, width: int = 80) -> str:
    """A name for a one-line message: repr (escapes newlines), shortened."""
    shown = repr(text[: width + 1])
    return shown if len(shown) <= width else shown[: width - 1] + "…'"


def pad(value: int, alignment: int) -> int:
    return value + (-value % alignment)


def check_layout(state: _Parse, size: int) -> int:
    """Alignment, bounds, overlaps, llama.cpp's order and unused bytes; returns how many tensors are cut off."""
    data_start = state.data_start or 0
    if state.tensors and data_start > size:
        state.add(G.HEADER_TRUNCATED, f"file ends at byte {size:,}, inside the padding before the data section "
                  f"(which starts at byte {data_start:,})")
    flagged: set[int] = set()
    for index, tensor in enumerate(state.tensors):
        if tensor.offset % state.alignment:
            state.add(G.BAD_ALIGNMENT, f"tensor {show(tensor.name)} starts at data offset {tensor.offset:,}, not "
                      f"a multiple of the {state.alignment}-byte alignment", tensor=tensor.name)
            flagged.add(index)
    cut_off = 0
    for tensor in state.tensors:
        if tensor.nbytes is not None and data_start + tensor.offset + tensor.nbytes > size:
            cut_off += 1
            state.add(G.TENSOR_OUT_OF_BOUNDS, f"tensor {show(tensor.name)} needs file bytes "
                      f"{data_start + tensor.offset:,}..{data_start + tensor.offset + tensor.nbytes:,} but the file "
                      f"is {size:,} bytes", tensor=tensor.name)
    flagged |= _check_overlaps(state)
    _check_order(state, flagged)
    _check_trailing(state, size)
    return cut_off


def _check_overlaps(state: _Parse) -> set[int]:
    sized = sorted((t.offset, t.offset + t.nbytes, i) for i, t in enumerate(state.tensors) if t.nbytes)
    flagged: set[int] = set()
    furthest, owner = 0, None
    for begin, end, index in sized:
        if owner is not None and begin < furthest:
            name, other = state.tensors[index].name, state.tensors[owner].name
            state.add(G.TENSOR_OVERLAP, f"tensor {show(name)} (data bytes {begin:,}..{end:,}) overlaps tensor "
                      f"{show(other)} (which ends at {furthest:,})", tensor=name)
            flagged.update((index, owner))
        if end > furthest:
            furthest, owner = end, index
    return flagged


def _check_order(state: _Parse, flagged: set[int]) -> None:
    """llama.cpp expects each tensor exactly where the previous one ends, padded to the alignment."""
    expected = 0
    for index, tensor in enumerate(state.tensors):
        if tensor.nbytes is None:
            return                     # size unknown: llama.cpp refuses the file earlier anyway
        if tensor.offset != expected:
            if index not in flagged:
                state.add(G.UNUSED_BYTES, f"tensor {show(tensor.name)} is at data offset {tensor.offset:,} but "
                          f"llama.cpp expects {expected:,} (tensors must follow each other in header order, padded "
                          f"to {state.alignment} bytes): llama.cpp refuses the file", tensor=tensor.name,
                          severity=Severity.MEDIUM)
            return
        expected += pad(tensor.nbytes, state.alignment)


def _check_trailing(state: _Parse, size: int) -> None:
    if any(t.nbytes is None for t in state.tensors) or state.data_start is None:
        return                         # unknown extents: cannot tell what is unused
    data_start = state.data_start
    end = max((data_start + t.offset + t.nbytes for t in state.tensors if t.nbytes is not None), default=data_start)
    # The last tensor (or, with no tensors, the header) may be padded to the alignment: that is not unused data.
    padded = pad(end, state.alignment)   # data_start is aligned; with no tensors, end is the header's end
    if size > padded:
        after = "the last tensor's data" if state.tensors else "the header (the file has no tensors)"
        state.add(G.UNUSED_BYTES, f"{size - padded:,} bytes follow {after} (file bytes {padded:,}..{size:,}); "
                  "no reader looks at them")
