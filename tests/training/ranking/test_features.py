"""training/ranking/features.py: action codes, device codes, profile hashes, vocabularies."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import pytest

from pipelines.schemas import DEVICE_TYPES, ENGAGED_LABELS, LABELS
from training.ranking.features import (
    DEVICES,
    ENGAGED_TASKS,
    N_ACTIONS,
    TASKS,
    decode_actions,
    device_codes,
    encode_actions,
    hash_string,
    hash_strings,
    is_engaged,
    task_mask,
)


def test_vocabularies_match_the_canonical_schema() -> None:
    assert TASKS == LABELS
    assert ENGAGED_TASKS == ENGAGED_LABELS
    assert tuple(DEVICES) == ("unknown", *sorted(DEVICE_TYPES))


def test_action_code_round_trip() -> None:
    codes = np.arange(N_ACTIONS, dtype=np.uint8)
    labels = decode_actions(codes)
    assert labels.shape == (N_ACTIONS, len(TASKS))
    assert labels.dtype == np.uint8
    assert len({tuple(row) for row in labels}) == N_ACTIONS  # every label combination once
    np.testing.assert_array_equal(encode_actions(labels), codes)


def test_action_code_bits_follow_task_order() -> None:
    labels = np.zeros((len(TASKS), len(TASKS)), dtype=np.int8)
    np.fill_diagonal(labels, 1)
    np.testing.assert_array_equal(encode_actions(labels), [1, 2, 4, 8, 16, 32])
    assert encode_actions(np.array([[1, 0, 0, 1, 0, 0]])).tolist() == [9]  # click + like
    assert task_mask(["skip"]) == 2
    np.testing.assert_array_equal(is_engaged(np.array([0, 2, 1, 3, 32])), [False, False, True, True, True])


def test_bad_action_inputs_raise() -> None:
    with pytest.raises(ValueError, match="shape"):
        encode_actions(np.zeros((3, 5)))
    with pytest.raises(ValueError, match=r"\[0, 64\)"):
        decode_actions(np.array([64]))
    with pytest.raises(ValueError, match="unknown task"):
        task_mask(["dwell"])


def test_device_codes_unknown_is_zero() -> None:
    codes = device_codes(["desktop_web", "tablet", None, "smart_tv", "mobile_app"])
    assert codes.dtype == np.int8
    assert codes.tolist() == [1, 4, 0, 0, 2]


def test_profile_hash_is_stable_and_zero_for_missing() -> None:
    assert hash_string(None) == 0
    assert hash_string("") == 0
    value = hash_string("Software")
    assert 0 < value < 2**62
    assert value == hash_string("Software")
    assert value != hash_string("software")
    hashed = hash_strings(["Software", None, "Finance", "Software", float("nan")])
    assert hashed.dtype == np.int64
    assert hashed.tolist() == [value, 0, hash_string("Finance"), value, 0]
    # fixed across processes and machines (blake2b, not Python's salted hash())
    digest = hashlib.blake2b(b"Software", digest_size=8).digest()
    assert value == 1 + int.from_bytes(digest, "little") % (2**62 - 1)


def test_importable_with_numpy_alone() -> None:
    code = (
        "import sys; import training.ranking.features; "
        "bad = {'pandas', 'torch', 'pyspark', 'feast', 'pyarrow'} & set(sys.modules); assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
