"""metrics.csv merged across runs: one row per output, updated in place, mean recomputed."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from ccdf_mri.io.tables import merge_metrics_csv, read_metrics_csv


def _m(nmse, psnr, ssim):
    return {"nmse": nmse, "psnr": psnr, "ssim": ssim}


def _lines(path):
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def test_two_runs_with_overlapping_names_then_a_rerun(tmp_path):
    path = tmp_path / "metrics.csv"
    merge_metrics_csv(path, {"a": _m(0.1, 30.0, 0.9), "b": _m(0.2, 28.0, 0.8)})
    # second run: b redone with other settings, c new
    merge_metrics_csv(path, [("b", _m(0.4, 26.0, 0.7)), ("c", _m(0.3, 27.0, 0.6))])
    lines = _lines(path)
    assert lines[0] == ["volume", "nmse", "psnr", "ssim"]
    assert [line[0] for line in lines[1:]] == ["a", "b", "c", "mean"]  # one row each, b replaced in place
    assert lines[2] == ["b", "0.4", "26", "0.7"]
    np.testing.assert_allclose([float(v) for v in lines[-1][1:]], [(0.1 + 0.4 + 0.3) / 3, 83.0 / 3, 2.2 / 3], rtol=1e-5)
    # a rerun that skipped every volume but rescored a: nothing lost, a's changed row updated
    merge_metrics_csv(path, {"a": _m(0.05, 31.0, 0.95)})
    columns, rows = read_metrics_csv(path)
    assert columns == ["nmse", "psnr", "ssim"] and list(rows) == ["a", "b", "c"]
    assert rows["a"] == _m(0.05, 31.0, 0.95) and rows["c"] == _m(0.3, 27.0, 0.6)
    np.testing.assert_allclose(float(_lines(path)[-1][1]), (0.05 + 0.4 + 0.3) / 3, rtol=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.csv"]  # no temporaries left


def test_bad_rows_and_files_are_named(tmp_path):
    path = tmp_path / "metrics.csv"
    with pytest.raises(ValueError, match="'mean' is reserved"):
        merge_metrics_csv(path, {"mean": _m(0, 0, 0)})
    with pytest.raises(ValueError, match="found 'a' twice"):
        merge_metrics_csv(path, [("a", _m(0, 0, 0)), ("a", _m(1, 1, 1))])
    assert not path.exists()
    path.write_text("volume,nmse,psnr,ssim\na,0.1,x,0.9\nmean,0.1,0,0.9\n")
    with pytest.raises(ValueError, match=r"metrics.csv: row 'a', column 'psnr': expected a number, found 'x'"):
        merge_metrics_csv(path, {"b": _m(0.1, 1, 1)})
    assert "a,0.1,x" in path.read_text()  # left as it was
    path.write_text("name,score\n")
    with pytest.raises(ValueError, match="expected a header starting with 'volume'"):
        read_metrics_csv(path)


def test_extra_columns_are_kept(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("volume,nmse,psnr,ssim,time_s\na,0.1,30,0.9,12\nmean,0.1,30,0.9,12\n")
    merge_metrics_csv(path, {"b": _m(0.3, 20.0, 0.5)})
    lines = _lines(path)
    assert lines[0] == ["volume", "nmse", "psnr", "ssim", "time_s"]
    assert lines[2] == ["b", "0.3", "20", "0.5", ""] and lines[3] == ["mean", "0.2", "25", "0.7", "12"]
