"""The codec: safe by default, compact, and tolerant of bytes it did not write."""

from __future__ import annotations

import datetime
import logging
import struct

import pytest

from hotpath import Codec, CodecError, ConfigError, Record


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        0,
        -(2**63),
        2**64 - 1,
        1.5,
        float("inf"),
        "text",
        "ключ \U0001f680",
        b"\x00\xffraw",
        [1, "a", None, [2.5]],
        {"id": "chatcmpl-1", "choices": [{"message": {"content": "hi"}}], "n": {"1": 2}},
        {1: "int keys"},
    ],
)
def test_values_round_trip(value: object) -> None:
    codec = Codec()
    record = Record(value, 1_700_000_123.25, 0.5, ("user:1", "org:2"))
    assert codec.decode(codec.encode(record)) == record


def test_nan_survives_which_json_would_not() -> None:
    codec = Codec()
    got = codec.decode(codec.encode(Record(float("nan"))))
    assert got is not None
    assert isinstance(got.value, float) and got.value != got.value


def test_tuples_come_back_as_lists() -> None:
    codec = Codec()
    got = codec.decode(codec.encode(Record((1, 2))))
    assert got is not None and got.value == [1, 2]


def test_bytes_are_stored_as_they_are() -> None:
    codec = Codec()
    payload = b"exact bytes"
    assert codec.encode(Record(payload)).endswith(payload)


def test_large_payloads_are_compressed_small_ones_are_not() -> None:
    codec = Codec(compress_min_bytes=1024)
    big = "the same sentence again. " * 400
    small = "short"
    assert len(codec.encode(Record(big))) < len(big) // 5
    assert len(codec.encode(Record(small))) < 64
    assert codec.decode(codec.encode(Record(big))) == Record(big)


def test_incompressible_payload_is_kept_raw() -> None:
    import os

    codec = Codec(compress_min_bytes=16)
    noise = os.urandom(4096)
    assert len(codec.encode(Record(noise))) <= len(noise) + 32


class Custom:
    def __init__(self, x: int) -> None:
        self.x = x

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Custom) and other.x == self.x

    def __hash__(self) -> int:
        return self.x


def test_no_pickle_by_default() -> None:
    with pytest.raises(CodecError, match=r"value cannot be encoded: Custom .*pickle=True"):
        Codec().encode(Record(Custom(1)))
    with pytest.raises(CodecError, match="datetime"):
        Codec().encode(Record(datetime.datetime(2026, 1, 1)))


def test_pickle_is_opt_in_and_untrusting_readers_treat_it_as_a_miss(
    caplog: pytest.LogCaptureFixture,
) -> None:
    trusting = Codec(pickle=True)
    blob = trusting.encode(Record(Custom(7)))
    assert trusting.decode(blob) == Record(Custom(7))
    with caplog.at_level(logging.WARNING, logger="hotpath.cache"):
        assert Codec().decode(blob, "k") is None
    assert "does not trust pickle" in caplog.text


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hp",
        b"not an envelope at all, just text",
        struct.pack("<2sBBdf", b"hp", 99, 1, 0.0, 0.0) + b"\x01",  # a future version
        struct.pack("<2sBBdf", b"hp", 1, 7, 0.0, 0.0) + b"\x01",  # unknown format
        struct.pack("<2sBBdf", b"hp", 1, 1 | 0x10, 0.0, 0.0) + b"not zstd",
        struct.pack("<2sBBdf", b"hp", 1, 1, 0.0, 0.0) + b"\xc1",  # invalid msgpack
    ],
)
def test_corrupt_or_foreign_bytes_read_as_a_miss_with_a_warning(
    data: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="hotpath.cache"):
        assert Codec().decode(data, "the-key") is None
    assert "'the-key' is unreadable" in caplog.text


def test_truncated_envelope_reads_as_a_miss() -> None:
    codec = Codec()
    blob = codec.encode(Record({"a": "b" * 100}, None, 0.0, ("t",)))
    for cut in (5, 16, 20, len(blob) - 1):
        assert codec.decode(blob[:cut]) is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pickle": "yes"}, "pickle must be True or False, got 'yes'"),
        ({"compress_min_bytes": 0}, "compress_min_bytes must be an int >= 1, got 0"),
        ({"compress_level": 30}, r"compress_level must be an int in 1..22, got 30"),
    ],
)
def test_bad_options_are_named(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Codec(**kwargs)  # type: ignore[arg-type]
