"""Input discovery (folders, subfolders, letter case, sidecars, nothing found) and output names."""

from __future__ import annotations

from pathlib import Path

import pytest

from ccdf_mri.io.discovery import (
    NameCollisionError,
    NoInputsError,
    find_inputs,
    output_names,
    volume_name,
)


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_empty_folder_is_an_error_naming_the_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    _touch(tmp_path / "other" / "notes.txt")
    with pytest.raises(NoInputsError, match=r"no input files.*empty and its subfolders: 0 .h5.*other and its subfolders: 0"):
        find_inputs([tmp_path / "empty", tmp_path / "other"])
    assert issubclass(NoInputsError, FileNotFoundError)  # callers catching FileNotFoundError still do
    with pytest.raises(NoInputsError, match="no input paths were given"):
        find_inputs([])


def test_h5_only_in_subfolders_found_recursively_by_default(tmp_path):
    files = [_touch(tmp_path / "b" / "x.h5"), _touch(tmp_path / "a" / "deep" / "y.h5"), _touch(tmp_path / "z.h5")]
    assert find_inputs(tmp_path) == sorted(files)
    assert find_inputs(tmp_path, recursive=False) == [tmp_path / "z.h5"]
    (tmp_path / "z.h5").unlink()
    with pytest.raises(NoInputsError, match=r"not its subfolders.*\(subfolders were not searched\)"):
        find_inputs(tmp_path, recursive=False)


def test_upper_case_suffix_and_sidecars_and_hidden_files(tmp_path):
    upper = _touch(tmp_path / "SCAN1.H5")
    mixed = _touch(tmp_path / "scan2.H5")
    for name in ("scan2.maps.h5", "SCAN1.MAPS.H5", ".a1b2.tmp-scan3.h5", "scan.h5.txt", "readme.md"):
        _touch(tmp_path / name)
    _touch(tmp_path / ".hidden" / "scan4.h5")
    assert find_inputs(tmp_path) == [upper, mixed]
    assert volume_name(upper) == "SCAN1" and volume_name(tmp_path / "a.b.h5") == "a.b"


def test_missing_and_explicit_paths_are_kept_once(tmp_path):
    a = _touch(tmp_path / "a.h5")
    other = _touch(tmp_path / "other.hdf5")  # named explicitly: kept whatever its suffix
    missing = tmp_path / "missing.h5"
    assert find_inputs([tmp_path, a, missing, other, tmp_path / "." / "a.h5"]) == [a, missing, other]
    assert find_inputs(missing) == [missing]  # the run reports it as failed; not "no inputs"


def test_output_folder_inside_the_input_folder_is_excluded(tmp_path):
    a = _touch(tmp_path / "a.h5")
    _touch(tmp_path / "out" / "a.h5")  # the submission file of a previous run
    assert find_inputs(tmp_path, exclude=[tmp_path / "out"]) == [a]


def test_two_x_h5_in_different_folders_collide_before_any_work(tmp_path):
    first, second = _touch(tmp_path / "dirA" / "x.h5"), _touch(tmp_path / "dirB" / "x.h5")
    files = find_inputs([tmp_path / "dirA", tmp_path / "dirB"])
    with pytest.raises(NameCollisionError, match=r"dirA/x.h5 and .*dirB/x.h5 both map to output name 'x'"):
        output_names(files)
    names = output_names(files, roots=[tmp_path], by_relative_path=True)
    assert names == {first: "dirA__x", second: "dirB__x"}
    # several folders named (`recon dirA dirB --name-by-path`): names below their common folder
    names = output_names(files, roots=[tmp_path / "dirA", tmp_path / "dirB"], by_relative_path=True)
    assert names == {first: "dirA__x", second: "dirB__x"}
    # one folder named: names below it; a file directly inside keeps its plain name
    deep = _touch(tmp_path / "dirA" / "sub" / "y.h5")
    assert output_names([first, deep], roots=[tmp_path / "dirA"], by_relative_path=True) == {first: "x", deep: "sub__y"}


def test_names_that_collide_in_other_ways(tmp_path):
    with pytest.raises(NameCollisionError, match="both map to output name"):
        output_names([tmp_path / "a" / "Knee.h5", tmp_path / "b" / "knee.H5"])  # one file on macOS/Windows
    with pytest.raises(NameCollisionError, match="standard-deviation map"):
        output_names([tmp_path / "x.h5", tmp_path / "x_std.h5"])
    with pytest.raises(NameCollisionError, match="reserved"):
        output_names([tmp_path / "mean.h5"])
    assert output_names([tmp_path / "a.h5", tmp_path / "b.h5"]) == {tmp_path / "a.h5": "a", tmp_path / "b.h5": "b"}
