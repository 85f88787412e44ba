"""Provenance records: input identity, settings and models, atomic JSON, named differences."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest

from ccdf_mri.io.provenance import (
    HEAD_TAIL_BYTES,
    array_sha256,
    differences,
    fast_hash,
    file_sha256,
    input_identity,
    make_record,
    model_hashes,
    read_record,
    record_path,
    write_record,
)

SETTINGS = {"mask": "equispaced_fraction", "acceleration": 4.0, "center_fraction": 0.08, "t0": 0.2,
            "num_steps": None, "sampler": "ddpm", "num_samples": 1, "seed": 0}


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "x.h5"
    path.write_bytes(np.random.default_rng(0).bytes(3 * HEAD_TAIL_BYTES))
    return path


def test_hashes_follow_their_definition(tmp_path, data):
    blob = data.read_bytes()
    assert file_sha256(data) == hashlib.sha256(blob).hexdigest()
    size = len(blob).to_bytes(8, "little")
    expected = hashlib.sha256(size + blob[:HEAD_TAIL_BYTES] + blob[-HEAD_TAIL_BYTES:]).hexdigest()
    assert fast_hash(data) == expected
    small = tmp_path / "small.bin"
    small.write_bytes(b"abc")
    assert fast_hash(small) == hashlib.sha256((3).to_bytes(8, "little") + b"abc").hexdigest()
    assert array_sha256(np.ones(4, np.float32)) != array_sha256(np.ones(4, np.float64))
    assert array_sha256(np.ones((1, 4))) != array_sha256(np.ones((4, 1)))


def test_record_round_trip_is_atomic_json(tmp_path, data):
    record = make_record(data, {**SETTINGS, "shape": (1, 2), "scale": np.float32(0.5)}, {"unet.pt": "ab" * 32}, "0.3.0")
    assert record["input"] == input_identity(data) and record["input"]["path"] == str(data.resolve())
    assert record["settings"]["shape"] == [1, 2] and record["settings"]["scale"] == 0.5
    path = write_record(record_path(tmp_path / "out", "x"), record)
    assert path.name == "x.provenance.json" and sorted(p.name for p in path.parent.iterdir()) == [path.name]
    assert read_record(path) == json.loads(json.dumps(record))
    assert differences(read_record(path), record) == []
    assert read_record(tmp_path / "none.provenance.json") is None
    with pytest.raises(TypeError, match="expected JSON-serialisable settings.*object"):
        make_record(data, {"bad": object()}, {}, "0")


def test_each_changed_setting_is_named(data):
    old = make_record(data, SETTINGS, {"score_net.pt": "1" * 64}, "0.3.0")
    new = make_record(data, {**SETTINGS, "acceleration": 8.0, "num_samples": 2, "extra": True}, {"score_net.pt": "2" * 64}, "0.4.0")
    assert differences(old, new) == [
        "acceleration: 4 -> 8",
        "extra: (absent) -> True",
        "num_samples: 1 -> 2",
        "model score_net.pt: " + "1" * 32 + "... -> " + "2" * 32 + "...",
        "version: 0.3.0 -> 0.4.0",
    ]
    assert differences(None, new) == ["no provenance record"]


def test_input_changes_are_seen_but_moving_it_is_not(tmp_path, data):
    old = make_record(data, SETTINGS, {}, "1")
    moved = tmp_path / "elsewhere" / "x.h5"
    moved.parent.mkdir()
    os.replace(data, moved)  # keeps size, content and modification time
    assert differences(old, make_record(moved, SETTINGS, {}, "1")) == []
    with open(moved, "r+b") as handle:  # same size, last byte changed, time restored
        handle.seek(-1, os.SEEK_END)
        last = handle.read(1)
        handle.seek(-1, os.SEEK_END)
        handle.write(b"\x00" if last != b"\x00" else b"\x01")
    os.utime(moved, ns=(old["input"]["mtime_ns"], old["input"]["mtime_ns"]))
    assert [line.split(":")[0] for line in differences(old, make_record(moved, SETTINGS, {}, "1"))] == ["input hash"]
    with open(moved, "ab") as handle:
        handle.write(b"more")
    lines = differences(old, make_record(moved, SETTINGS, {}, "1"))
    assert lines[0] == f"input size: {3 * HEAD_TAIL_BYTES} -> {3 * HEAD_TAIL_BYTES + 4}" and len(lines) == 3


def test_unreadable_record_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "x.provenance.json"
    path.write_text("{half")
    with pytest.raises(ValueError, match="x.provenance.json: expected a JSON provenance record"):
        read_record(path)
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="expected a JSON object with key 'format'"):
        read_record(path)


def test_model_hashes_of_a_folder(tmp_path):
    (tmp_path / "unet.pt").write_bytes(b"weights")
    (tmp_path / "unet.json").write_text("{}")
    (tmp_path / "notes.txt").write_text("ignored")
    assert model_hashes(tmp_path) == {
        "unet.json": hashlib.sha256(b"{}").hexdigest(),
        "unet.pt": hashlib.sha256(b"weights").hexdigest(),
    }
