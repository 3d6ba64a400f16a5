"""Execution ids are built without uuid.UUID's argument parsing; they must be real v4 UUIDs."""

from __future__ import annotations

import copy
import pickle
import random
import uuid

from instrument.call import _V4_CLEAR, _V4_SET, _new_execution_id


def test_ids_equal_what_uuid_builds_for_the_same_bits() -> None:
    rng = random.Random(3)
    for _ in range(5000):
        bits = rng.getrandbits(128)
        assert (bits & _V4_CLEAR) | _V4_SET == uuid.UUID(int=bits, version=4).int
    for bits in (0, (1 << 128) - 1):
        assert (bits & _V4_CLEAR) | _V4_SET == uuid.UUID(int=bits, version=4).int


def test_ids_behave_like_uuid4() -> None:
    ids = [_new_execution_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for u in ids[:200]:
        twin = uuid.UUID(str(u))
        assert type(u) is uuid.UUID
        assert u == twin
        assert hash(u) == hash(twin)
        assert u.int == twin.int
        assert u.version == 4
        assert u.variant == uuid.RFC_4122
        assert u.is_safe is uuid.SafeUUID.unknown
        assert pickle.loads(pickle.dumps(u)) == u
        assert copy.deepcopy(u) == u
