"""fastMRI reader/writer: round trips on files the tests write, header geometry, bad input."""

from __future__ import annotations

import pickle

import h5py
import numpy as np
import pytest

from ccdf_mri.io import (
    FastMRIHeader,
    FastMRIVolume,
    is_fastmri_file,
    make_ismrmrd_header,
    parse_ismrmrd_header,
    write_fastmri_h5,
)

# A header in the layout of fastMRI knee files (written for these tests): extra
# sections the reader must skip, xsi attributes, three encoding limits.
KNEE_LIKE_XML = b"""<?xml version="1.0" encoding="utf-8"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
    xsi:schemaLocation="http://www.ismrm.org/ISMRMRD ismrmrd.xsd">
  <studyInformation><studyTime>10:00:00</studyTime></studyInformation>
  <measurementInformation>
    <measurementID>1_2_3</measurementID>
    <patientPosition>FFS</patientPosition>
    <protocolName>CORPD_FBK</protocolName>
  </measurementInformation>
  <acquisitionSystemInformation>
    <systemVendor>SIEMENS</systemVendor>
    <systemFieldStrength_T>2.89</systemFieldStrength_T>
    <receiverChannels>3</receiverChannels>
  </acquisitionSystemInformation>
  <experimentalConditions><H1resonanceFrequency_Hz>123252837</H1resonanceFrequency_Hz></experimentalConditions>
  <encoding>
    <encodedSpace>
      <matrixSize><x>640</x><y>36</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>280</x><y>280</y><z>4.5</z></fieldOfView_mm>
    </encodedSpace>
    <reconSpace>
      <matrixSize><x>320</x><y>320</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>140</x><y>140</y><z>3</z></fieldOfView_mm>
    </reconSpace>
    <trajectory>cartesian</trajectory>
    <encodingLimits>
      <kspace_encoding_step_1><minimum>0</minimum><maximum>29</maximum><center>16</center></kspace_encoding_step_1>
      <kspace_encoding_step_2><minimum>0</minimum><maximum>0</maximum><center>0</center></kspace_encoding_step_2>
      <slice><minimum>0</minimum><maximum>1</maximum><center>0</center></slice>
    </encodingLimits>
    <parallelImaging><accelerationFactor><kspace_encoding_step_1>1</kspace_encoding_step_1></accelerationFactor></parallelImaging>
  </encoding>
</ismrmrdHeader>
"""

SLICES, COILS, ROWS, COLS = 2, 3, 640, 36


def _complex(rng: np.random.Generator, shape: tuple) -> np.ndarray:
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


@pytest.fixture
def multicoil(tmp_path):
    rng = np.random.default_rng(0)
    kspace = _complex(rng, (SLICES, COILS, ROWS, COLS))
    rss = rng.random((SLICES, 320, 320)).astype(np.float32)
    esc = rng.random((SLICES, 320, 320)).astype(np.float32)
    attrs = {"max": 0.0123, "norm": 4.5, "acquisition": "CORPD_FBK", "patient_id": "a1b2"}
    path = write_fastmri_h5(
        tmp_path / "file1000001.h5",
        kspace,
        KNEE_LIKE_XML,
        attrs,
        targets={"reconstruction_rss": rss, "reconstruction_esc": esc},
    )
    return path, kspace, rss, esc


def test_multicoil_round_trip(multicoil):
    path, kspace, rss, esc = multicoil
    with FastMRIVolume(path) as volume:
        assert volume.is_multicoil and volume.num_slices == len(volume) == SLICES
        assert volume.kspace_shape == (SLICES, COILS, ROWS, COLS)
        for index in range(SLICES):
            out = volume.kspace_slice(index)
            assert out.dtype == np.complex64 and out.shape == (COILS, ROWS, COLS)
            np.testing.assert_array_equal(out, kspace[index])
        np.testing.assert_array_equal(np.stack(list(volume)), kspace)
        np.testing.assert_array_equal(volume.kspace_slice(-1), kspace[-1])
        assert volume.target_key == "reconstruction_rss"  # multi-coil prefers RSS
        np.testing.assert_array_equal(volume.target_slice(1), rss[1])
        np.testing.assert_array_equal(volume.target_slice(0, "reconstruction_esc"), esc[0])
        assert volume.attrs["acquisition"] == "CORPD_FBK" and volume.attrs["patient_id"] == "a1b2"
        assert volume.attrs["max"] == pytest.approx(0.0123) and volume.attrs["norm"] == pytest.approx(4.5)
        assert not volume.has_mask and volume.mask is None and volume.acceleration is None
        header = volume.header
        assert header.encoded_matrix == (640, 36, 1) and header.recon_matrix == (320, 320, 1)
        assert header.encoded_fov_mm == (280.0, 280.0, 4.5) and header.recon_fov_mm == (140.0, 140.0, 3.0)
        assert (header.kspace_center, header.kspace_max) == (16, 29)
        assert header.readout_crop_rows(ROWS) == 320
        assert header.pixel_spacing_mm == (140 / 320, 140 / 320) and header.slice_thickness_mm == 3.0
        sample = volume.sample(1)
        assert sample["kspace"].shape == (COILS, ROWS, COLS) and sample["target"].shape == (320, 320)
        assert sample["meta"]["filename"] == "file1000001.h5" and sample["meta"]["slice"] == 1
        assert "mask" not in sample
        assert parse_ismrmrd_header(sample["meta"]["header"]) == header  # XML, so it collates
        with pytest.raises(IndexError, match="slice 2 out of range"):
            volume.kspace_slice(SLICES)
    assert volume._file is None  # closed by the context manager


def test_reader_opens_once_and_reads_one_slice_per_call(multicoil, monkeypatch):
    path = multicoil[0]
    opened = []
    original = h5py.File

    def counting_file(*args, **kwargs):
        opened.append(args[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(h5py, "File", counting_file)
    with FastMRIVolume(path) as volume:
        requests = []

        class Recorder:
            def __getitem__(self, key):
                requests.append(key)
                return dataset[key]

        dataset, volume._kspace = volume._kspace, Recorder()
        for index in range(SLICES):
            volume.kspace_slice(index)
            volume.target_slice(index)
    assert len(opened) == 1
    assert requests == list(range(SLICES))  # one integer slice index per read, never the volume


def test_single_coil_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    kspace = _complex(rng, (3, 64, 40))
    esc = rng.random((3, 32, 32)).astype(np.float32)
    rss = rng.random((3, 32, 32)).astype(np.float32)
    xml = make_ismrmrd_header((64, 40, 1), (32, 32, 1), (220.0, 200.0, 6.0), (110.0, 110.0, 5.0))
    path = write_fastmri_h5(
        tmp_path / "single.h5", kspace, xml, {"acquisition": "CORPD_FBK"},
        targets={"reconstruction_esc": esc, "reconstruction_rss": rss},
    )
    with FastMRIVolume(path) as volume:
        assert not volume.is_multicoil and volume.num_coils == 1
        out = volume.kspace_slice(2)
        assert out.shape == (1, 64, 40)
        np.testing.assert_array_equal(out[0], kspace[2])
        assert volume.target_key == "reconstruction_esc"  # single-coil prefers ESC
        np.testing.assert_array_equal(volume.target_slice(2), esc[2])
        assert volume.attrs["max"] is None and volume.attrs["patient_id"] is None
        assert volume.header.readout_crop_rows(64) == 32


def test_complex_targets_are_stored_complex(tmp_path):
    """A complex target (a simulation's noise-free image) keeps its imaginary part; the reader
    gives its magnitude (it was once stored as its real part, silently)."""
    rng = np.random.default_rng(2)
    kspace = _complex(rng, (2, 32, 32))
    target = _complex(rng, (2, 32, 32))
    xml = make_ismrmrd_header((32, 32, 1), (32, 32, 1), (64.0, 64.0, 3.0), (64.0, 64.0, 3.0))
    path = write_fastmri_h5(tmp_path / "c.h5", kspace, xml, targets={"target_complex": target})
    with h5py.File(path, "r") as handle:
        assert handle["target_complex"].dtype == np.complex64
    with FastMRIVolume(path) as volume:
        np.testing.assert_allclose(volume.target_slice(1, "target_complex"), np.abs(target[1]), rtol=1e-6)


def test_test_set_file_with_mask(tmp_path):
    rng = np.random.default_rng(2)
    mask = np.zeros(36, dtype=bool)
    mask[::4] = True
    mask[15:21] = True
    kspace = _complex(rng, (2, 4, 640, 36)) * mask
    path = write_fastmri_h5(
        tmp_path / "file_test.h5", kspace, KNEE_LIKE_XML, {"acquisition": "CORPDFS_FBK"},
        mask=mask, extra_attrs={"acceleration": 4, "num_low_frequency": 6},
    )
    with FastMRIVolume(path) as volume:
        assert volume.has_mask and volume.mask.dtype == np.float32
        np.testing.assert_array_equal(volume.mask, mask.astype(np.float32))
        assert volume.acceleration == 4 and volume.num_low_frequency == 6
        assert volume.target_key is None
        with pytest.raises(ValueError, match="expected a target dataset"):
            volume.target_slice(0)
        sample = volume.sample(0)
        assert tuple(sample["mask"].shape) == (1, 1, 36) and "target" not in sample
        np.testing.assert_array_equal(sample["kspace"].numpy(), kspace[0])


def test_pickled_volume_reopens(multicoil):
    path, kspace = multicoil[:2]
    with FastMRIVolume(path) as volume:
        clone = pickle.loads(pickle.dumps(volume))
    with clone:
        np.testing.assert_array_equal(clone.kspace_slice(0), kspace[0])


def test_is_fastmri_file(multicoil, tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with h5py.File(tmp_path / "other.h5", "w") as handle:
        handle["image"] = np.zeros(3)
    assert is_fastmri_file(multicoil[0])
    assert not is_fastmri_file(tmp_path / "notes.txt")
    assert not is_fastmri_file(tmp_path / "other.h5")
    assert not is_fastmri_file(tmp_path / "missing.h5")


# -- header ---------------------------------------------------------------------------
def test_header_round_trip_and_padding():
    xml = make_ismrmrd_header((640, 372, 1), (320, 320, 1), (280.0, 281.5, 4.5), (140.0, 140.0, 3.0), 172, 339)
    header = parse_ismrmrd_header(xml)
    assert header == FastMRIHeader((640, 372, 1), (320, 320, 1), (280.0, 281.5, 4.5), (140.0, 140.0, 3.0), 172, 339)
    assert 'xmlns="http://www.ismrm.org/ISMRMRD"' in xml
    # fastMRI: left = W // 2 - center = 186 - 172, right = left + maximum + 1
    assert header.padding_columns(372) == (14, 354)
    assert FastMRIHeader((64, 32, 1), (32, 32, 1), (1, 1, 1), (1, 1, 1)).padding_columns(32) == (0, 32)
    assert header.readout_crop_rows(320) is None  # already cropped


def test_header_missing_element_is_named():
    xml = KNEE_LIKE_XML.replace(b"<reconSpace>", b"<reconSpaceX>").replace(b"</reconSpace>", b"</reconSpaceX>")
    with pytest.raises(ValueError, match="encoding/reconSpace/matrixSize/x"):
        parse_ismrmrd_header(xml, file="f.h5")


# -- bad input ------------------------------------------------------------------------
def _raw_h5(path, **datasets):
    with h5py.File(path, "w") as handle:
        for key, value in datasets.items():
            handle.create_dataset(key, data=value)
    return path


GOOD_XML = np.bytes_(make_ismrmrd_header((16, 8, 1), (8, 8, 1), (200.0, 200.0, 3.0), (100.0, 100.0, 3.0)))
GOOD_KSPACE = np.ones((2, 2, 16, 8), dtype=np.complex64)


@pytest.mark.parametrize(
    "datasets, pattern",
    [
        ({"ismrmrd_header": GOOD_XML}, r"key 'kspace': expected a dataset 'kspace', found keys \['ismrmrd_header'\]"),
        ({"kspace": GOOD_KSPACE}, r"key 'ismrmrd_header': expected a dataset"),
        ({"kspace": GOOD_KSPACE.real, "ismrmrd_header": GOOD_XML}, r"key 'kspace': expected complex k-space, found dtype float32"),
        ({"kspace": GOOD_KSPACE[0, 0], "ismrmrd_header": GOOD_XML}, r"key 'kspace': expected shape .* found shape \(16, 8\)"),
        ({"kspace": GOOD_KSPACE, "ismrmrd_header": np.bytes_(b"not xml at all")}, r"key 'ismrmrd_header': expected ISMRMRD XML"),
        (
            {"kspace": GOOD_KSPACE[..., :6], "ismrmrd_header": GOOD_XML},
            r"key 'kspace': shape \(2, 2, 16, 6\) disagrees with the ismrmrd_header encoded matrix: "
            r"expected rows x cols = 16 x 8, found 16 x 6",
        ),
        (
            {"kspace": GOOD_KSPACE, "ismrmrd_header": GOOD_XML, "mask": np.ones(7, bool)},
            r"key 'mask': expected shape \(8,\)",
        ),
        (
            {"kspace": GOOD_KSPACE, "ismrmrd_header": GOOD_XML, "reconstruction_rss": np.ones((3, 8, 8))},
            r"key 'reconstruction_rss': expected shape \(2, h, w\), found \(3, 8, 8\)",
        ),
    ],
    ids=["no-kspace", "no-header", "real", "rank", "not-xml", "shape-vs-header", "mask-shape", "target-slices"],
)
def test_bad_files_name_file_key_and_values(tmp_path, datasets, pattern):
    path = _raw_h5(tmp_path / "bad.h5", **datasets)
    with pytest.raises(ValueError, match=pattern) as error:
        FastMRIVolume(path)
    assert str(path) in str(error.value)


def test_not_hdf5_missing_and_truncated(tmp_path):
    text = tmp_path / "scan.h5"
    text.write_text("this is not HDF5")
    with pytest.raises(ValueError, match=f"{text}: expected an HDF5"):
        FastMRIVolume(text)
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        FastMRIVolume(tmp_path / "missing.h5")
    full = write_fastmri_h5(tmp_path / "full.h5", np.ones((4, 2, 16, 8), np.complex64), GOOD_XML.decode())
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(ValueError, match="truncated.h5"):
        with FastMRIVolume(truncated) as volume:
            list(volume)


def test_nan_slice_is_reported(tmp_path):
    kspace = GOOD_KSPACE.copy()
    kspace[1, 0, 3, 2] = np.nan
    kspace[1, 1, 0, 0] = np.inf
    path = write_fastmri_h5(tmp_path / "nan.h5", kspace, GOOD_XML.decode())
    with FastMRIVolume(path) as volume:
        volume.kspace_slice(0)
        with pytest.raises(ValueError, match=r"nan.h5: key 'kspace': expected finite values, found 2 NaN/Inf in slice 1"):
            volume.kspace_slice(1)


def test_writer_rejects_bad_arrays_and_leaves_nothing(tmp_path):
    xml = GOOD_XML.decode()
    with pytest.raises(ValueError, match="expected complex k-space, found dtype float64"):
        write_fastmri_h5(tmp_path / "a.h5", np.ones((2, 16, 8)), xml)
    with pytest.raises(ValueError, match=r"key 'mask': expected shape \(8,\), found \(9,\)"):
        write_fastmri_h5(tmp_path / "a.h5", GOOD_KSPACE, xml, mask=np.ones(9))
    with pytest.raises(ValueError, match=r"key 'reconstruction_rss': expected shape \(2, h, w\)"):
        write_fastmri_h5(tmp_path / "a.h5", GOOD_KSPACE, xml, targets={"reconstruction_rss": np.ones((8, 8))})
    assert list(tmp_path.iterdir()) == []


# -- one pass before reconstructing: scan ---------------------------------------------
SCAN_XML = make_ismrmrd_header((32, 12, 1), (16, 10, 1), (200.0, 120.0, 3.0), (100.0, 100.0, 3.0), kspace_center=6, kspace_max=10)


def _scan_file(tmp_path, name="v.h5", mask=None, targets=None, slices=3, **changes):
    kspace = _complex(np.random.default_rng(1), (slices, 2, 32, 12))
    kspace[..., 11] = 0  # the zero padding the header declares: columns [0, 11) hold data
    if mask is not None:
        kspace = kspace * mask
    for index, value in changes.get("set", []):
        kspace[index] = value
    if targets is None:
        targets = {"reconstruction_rss": np.ones((slices, 16, 10), np.float32)}
    return write_fastmri_h5(tmp_path / name, kspace, SCAN_XML, {"patient_id": "pid7"}, targets)


def test_scan_of_a_fully_sampled_file(tmp_path, monkeypatch):
    path = _scan_file(tmp_path)
    reads = []
    original = FastMRIVolume.kspace_slice
    monkeypatch.setattr(FastMRIVolume, "kspace_slice", lambda self, i: reads.append(i) or original(self, i))
    with FastMRIVolume(path) as volume:
        assert volume.header.padding_columns(12) == (0, 11)
        scan = volume.scan()
    assert reads == [0, 1, 2]  # each slice read once
    assert scan.detected_mask is None and not scan.is_undersampled and scan.detected_acceleration is None
    assert scan.sampled.tolist() == [True] * 11 + [False]
    assert scan.target_key == "reconstruction_rss" and scan.image_shape == (3, 16, 10)
    assert scan.kspace_shape == (3, 2, 32, 12) and scan.path == path


def test_scan_detects_already_undersampled_data_without_a_mask_dataset(tmp_path):
    mask = np.zeros(12, np.float32)
    mask[[0, 3, 5, 6, 7, 9]] = 1
    with FastMRIVolume(_scan_file(tmp_path, mask=mask)) as volume:
        assert not volume.has_mask
        scan = volume.scan()
    assert scan.is_undersampled and scan.detected_mask.shape == (1, 1, 1, 12)
    np.testing.assert_array_equal(scan.detected_mask.reshape(-1).numpy(), mask)
    assert scan.detected_acceleration == pytest.approx(2.0)


def test_scan_finds_a_nan_in_the_last_slice_before_any_reconstruction(tmp_path):
    path = _scan_file(tmp_path, "nan.h5", set=[((2, 1, 5, 4), np.nan)])
    with FastMRIVolume(path) as volume:
        with pytest.raises(ValueError, match=r"nan.h5: key 'kspace': expected finite values, found 1 NaN/Inf in slice 2"):
            volume.scan()
    path = _scan_file(tmp_path, "zero.h5", set=[(1, 0)])
    with FastMRIVolume(path) as volume:
        with pytest.raises(ValueError, match=r"zero.h5: key 'kspace': expected k-space data, found slice 1 all zero"):
            volume.scan()


def test_scan_checks_the_target_key(tmp_path):
    path = _scan_file(tmp_path, targets={"reconstruction_rss": np.ones((3, 16, 10)), "target_complex": np.ones((3, 16, 9))})
    with FastMRIVolume(path) as volume:
        with pytest.raises(ValueError, match=r"v.h5: key 'foo': expected a dataset 'foo', found keys \[.*'reconstruction_rss'"):
            volume.scan(target_key="foo")
        with pytest.raises(ValueError, match=r"key 'target_complex': expected a target of the reconstruction's shape \(3, 16, 10\), found shape \(3, 16, 9\)"):
            volume.scan(target_key="target_complex")
        assert volume.scan(target_key="target_complex", check_target_shape=False).target_key == "target_complex"
    bad = np.ones((3, 16, 10), np.float32)
    bad[1, 2, 3] = np.inf
    with FastMRIVolume(_scan_file(tmp_path, "inf.h5", targets={"reconstruction_rss": bad})) as volume:
        with pytest.raises(ValueError, match="inf.h5: key 'reconstruction_rss': expected finite values, found 1 NaN/Inf in slice 1"):
            volume.scan()
    with FastMRIVolume(_scan_file(tmp_path, "none.h5", targets={})) as volume:
        assert volume.scan().target_key is None


def test_scan_info_and_image_shape(multicoil):
    with FastMRIVolume(multicoil[0]) as volume:
        assert volume.image_shape == (SLICES, 320, 36)  # recon 320 x 320, capped by the 36 columns
        info = volume.scan_info()
        assert (info.patient_id, info.patient_position, info.manufacturer, info.plane) == ("a1b2", "FFS", "SIEMENS", "coronal")
        assert volume.scan_info(patient_id="X1").patient_id == "X1"
