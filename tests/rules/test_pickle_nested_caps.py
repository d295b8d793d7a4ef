"""WA411 (medium: a dormant pickle, nothing calls it) searches every constant of a pickle, however many there are and however long (issue 10: no cap that
makes the search look away). Before, constants past the 10,000th and byte strings over 1 MiB were never searched
for a hidden pickle: a payload placed there passed without a word."""

from __future__ import annotations

import base64
import pickle
from pathlib import Path

from weightaudit.formats import LoadOptions, read_probe, sniff

PAYLOAD = b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00id\x85R."     # a pickle that would run os.system("id")


def _findings(tmp_path: Path, obj: object) -> list[tuple[str, str]]:
    path = tmp_path / "x.pkl"
    path.write_bytes(pickle.dumps(obj, protocol=2))
    loaded = sniff(read_probe(path)).load(path, path.name, LoadOptions())
    return sorted({(f.rule_id, f.severity.label) for f in loaded.findings if f.rule_id != "WA410"})   # WA410: info,
    # torch.load refuses any raw pickle


def test_a_hidden_pickle_after_ten_thousand_constants_is_found(tmp_path: Path) -> None:
    names = {f"layer.{i}.weight": i for i in range(10_050)}
    names["zz.blob"] = base64.b64encode(PAYLOAD).decode()
    assert ("WA411", "medium") in _findings(tmp_path, names)


def test_white_space_before_a_hidden_pickle_does_not_hide_it(tmp_path: Path) -> None:
    padded = " " * 10_000 + base64.b64encode(PAYLOAD).decode() + "\n"
    assert ("WA411", "medium") in _findings(tmp_path, {"blob": padded, **{f"n{i}": i for i in range(20)}})


def test_a_hidden_pickle_deeper_than_a_thousand_constants_of_its_outer_pickle_is_found(tmp_path: Path) -> None:
    inner = pickle.dumps([f"name{i}" for i in range(1_200)] + [PAYLOAD], protocol=2)
    assert ("WA411", "medium") in _findings(tmp_path, {"blob": inner})


def test_a_hidden_pickle_over_a_mebibyte_is_searched(tmp_path: Path) -> None:
    """The call is at the start; a mebibyte of padding behind it no longer hides it."""
    big = PAYLOAD[:-1] + b"0" + b"N" * (1 << 21) + b"."          # POP the call's result, then 2 MiB of NONE
    assert ("WA411", "medium") in _findings(tmp_path, {"blob": big})


def test_a_hidden_pickle_whose_call_lies_past_the_scanned_bytes_is_not_fully_checked(tmp_path: Path) -> None:
    big = b"\x80\x02" + b"N0" * (1 << 20) + PAYLOAD[2:]          # 2 MiB of NONE/POP, then the call
    found = _findings(tmp_path, {"blob": big})
    assert ("WA405", "high") in found                            # the file unverified, never a silent pass


def test_ordinary_constants_stay_silent(tmp_path: Path) -> None:
    """Tensor names, hex digests, base64 text and a long raw byte string that hide nothing: no finding."""
    obj = {f"model.layers.{i}.mlp.weight": "8" * 64 for i in range(12_000)}
    obj["digest"] = "fd" * 32
    obj["note"] = base64.b64encode(b"hello world, nothing here").decode()
    obj["raw"] = bytes(range(256)) * 8192                        # 2 MiB starting with 0x00
    obj["raw_80"] = b"\x80" + bytes(1 << 21)                     # starts like a pickle, protocol 0: not one
    assert _findings(tmp_path, obj) == []


def test_a_pickle_of_many_tiny_hidden_pickles_stops_at_the_users_limit(tmp_path: Path) -> None:
    """Each hidden pickle costs a scan: past limits.hidden_pickles_per_file the rest are WA405 (unverified), so a
    file of millions of them cannot buy minutes; under the limit they are all read."""
    from dataclasses import replace

    from weightaudit.limits import DEFAULT_LIMITS

    tiny = [base64.b64encode(b"\x80\x02K" + bytes([i]) + b".").decode() for i in range(50)]   # harmless: an int
    path = tmp_path / "x.pkl"
    path.write_bytes(pickle.dumps(tiny + [base64.b64encode(PAYLOAD).decode()], protocol=2))
    options = LoadOptions(limits=replace(DEFAULT_LIMITS, hidden_pickles_per_file=20))
    loaded = sniff(read_probe(path)).load(path, path.name, options)
    found = [(f.rule_id, f.message) for f in loaded.findings if f.rule_id != "WA410"]
    assert [rule for rule, _ in found] == ["WA405"] and "limits.hidden_pickles_per_file = 20" in found[0][1]
    assert not loaded.verified
    assert ("WA411", "medium") in _findings(tmp_path, tiny + [base64.b64encode(PAYLOAD).decode()])


def test_pickles_nested_deeper_than_followed_are_not_fully_checked(tmp_path: Path) -> None:
    """MAX_NESTED_DEPTH (4) pickles inside pickles are followed; a fifth level is WA405, never a silent pass."""
    from weightaudit.rules.pickle_nested import MAX_NESTED_DEPTH

    def nest(levels: int) -> object:
        blob: bytes = PAYLOAD
        for _ in range(levels - 1):
            blob = pickle.dumps({"next": blob}, protocol=3)
        return {"blob": blob}

    assert ("WA411", "medium") in _findings(tmp_path, nest(MAX_NESTED_DEPTH))
    assert _findings(tmp_path, nest(MAX_NESTED_DEPTH + 1)) == [("WA405", "high")]
