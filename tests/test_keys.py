"""Stable keys: fixed vectors pin the encoding across processes and versions."""

from __future__ import annotations

import dataclasses
import enum
import subprocess
import sys

import pytest

from hotpath import KeyBuildError, fingerprint


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: int
    y: int


def test_dict_order_does_not_matter() -> None:
    assert fingerprint({"a": 1, "b": 2}) == fingerprint({"b": 2, "a": 1})
    assert fingerprint({1, 2, 3}) == fingerprint({3, 2, 1})


def test_types_are_distinguished() -> None:
    values = [1, 1.0, "1", b"1", True, [1], (1,), {1}, None, {"1": 1}]
    assert len({fingerprint(v) for v in values}) == len(values)


def test_pinned_vectors() -> None:
    # If one of these changes, every deployed cache loses its keys: change them only on purpose.
    assert fingerprint(None) == "738096e476d3c5447c3cb95c39bfc964"
    assert fingerprint({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}) == (
        "5f7a590250efe358367e84c098702851"
    )
    assert fingerprint([1, "a", 2.5, True, None, b"\x00"]) == "d006355b5a66615680a6542155a86516"


def test_same_in_another_process() -> None:
    value = {"q": "hello", "n": [1, 2.5, None], "e": Color.RED, "p": Point(1, 2)}
    code = (
        "import dataclasses, enum\n"
        "from hotpath import fingerprint\n"
        "class Color(enum.Enum):\n    RED = 'red'\n"
        "@dataclasses.dataclass\nclass Point:\n    x: int\n    y: int\n"
        "Color.__module__ = Point.__module__ = 'tests.test_keys'\n"
        "v = {'q': 'hello', 'n': [1, 2.5, None], 'e': Color.RED, 'p': Point(1, 2)}\n"
        "print(fingerprint(v))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "123"},
    )
    Color.__module__ = Point.__module__ = "tests.test_keys"
    assert out.stdout.strip() == fingerprint(value)


def test_unencodable_value_names_the_path() -> None:
    with pytest.raises(KeyBuildError, match=r"value\[1\]\['k'\] has no stable key encoding"):
        fingerprint([1, {"k": object()}])
