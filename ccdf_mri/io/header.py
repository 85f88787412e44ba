"""The ISMRMRD XML header of fastMRI files: the geometry the reconstruction needs.

fastMRI stores the ISMRMRD header (namespace ``http://www.ismrm.org/ISMRMRD``) as a
byte string in the ``ismrmrd_header`` dataset. Only a few fields matter here:

- ``encoding/encodedSpace``: the acquired matrix ``(x, y, z)`` (x = readout = k-space
  rows, including 2x readout oversampling; y = phase encode = k-space columns) and its
  field of view in mm;
- ``encoding/reconSpace``: the matrix and field of view of the final image (x is
  half the encoded x when the readout was oversampled);
- ``encoding/encodingLimits/kspace_encoding_step_1``: ``center`` and ``maximum`` of the
  acquired phase-encode lines, which locate the zero padding of the k-space columns.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

ISMRMRD_NAMESPACE = "http://www.ismrm.org/ISMRMRD"
_NS = {"ismrmrd": ISMRMRD_NAMESPACE}

Triple = Tuple[int, int, int]
TripleF = Tuple[float, float, float]


@dataclass(frozen=True)
class FastMRIHeader:
    """Geometry of a fastMRI acquisition, parsed from its ISMRMRD header.

    Attributes:
        encoded_matrix: acquired matrix ``(x, y, z)`` (x = readout rows, y = phase-encode columns).
        recon_matrix: reconstructed image matrix ``(x, y, z)``.
        encoded_fov_mm: field of view of the encoded matrix in mm ``(x, y, z)``.
        recon_fov_mm: field of view of the reconstructed image in mm ``(x, y, z)``;
            ``z`` is the slice thickness when ``recon_matrix[2] == 1``.
        kspace_center: index of the k-space centre line among the acquired phase-encode
            lines (``kspace_encoding_step_1/center``), or None when absent.
        kspace_max: index of the last acquired phase-encode line
            (``kspace_encoding_step_1/maximum``), or None when absent.
    """

    encoded_matrix: Triple
    recon_matrix: Triple
    encoded_fov_mm: TripleF
    recon_fov_mm: TripleF
    kspace_center: Optional[int] = None
    kspace_max: Optional[int] = None

    def padding_columns(self, width: int) -> Tuple[int, int]:
        """Columns of a k-space of ``width`` columns that hold acquired lines.

        Follows fastMRI's convention: ``left = width // 2 - center`` and
        ``right = left + maximum + 1``; columns ``< left`` and ``>= right`` are zero padding.

        Args:
            width: number of k-space columns (phase-encode axis, the last axis).

        Returns:
            ``(left, right)`` clipped to ``[0, width]``; ``(0, width)`` when the header has
            no encoding limits.
        """
        if self.kspace_center is None or self.kspace_max is None:
            return 0, width
        left = width // 2 - self.kspace_center
        right = left + self.kspace_max + 1
        return max(0, min(left, width)), max(0, min(right, width))

    def readout_crop_rows(self, num_rows: int) -> Optional[int]:
        """Number of rows to keep when removing readout oversampling, or None.

        Args:
            num_rows: number of k-space rows ``H`` (readout axis, axis -2).

        Returns:
            ``recon_matrix[0]`` when the k-space has the encoded number of rows and the
            recon matrix is smaller along the readout (fastMRI's 640 -> 320), else None.
        """
        rows = self.recon_matrix[0]
        if num_rows == self.encoded_matrix[0] and rows < num_rows:
            return rows
        return None

    @property
    def pixel_spacing_mm(self) -> Tuple[float, float]:
        """Spacing of the reconstructed image in mm: ``(between rows, between columns)``."""
        return (
            self.recon_fov_mm[0] / self.recon_matrix[0],
            self.recon_fov_mm[1] / self.recon_matrix[1],
        )

    @property
    def slice_thickness_mm(self) -> float:
        """Slice thickness in mm: recon field of view along z divided by the recon z matrix."""
        return self.recon_fov_mm[2] / max(self.recon_matrix[2], 1)


def _describe(file: Union[str, os.PathLike, None]) -> str:
    return f"{os.fspath(file)}: " if file is not None else ""


def _find(root: ET.Element, path: str, file, required: bool = True) -> Optional[ET.Element]:
    element = root.find("/".join(f"ismrmrd:{p}" for p in path.split("/")), _NS)
    if element is None and required:
        raise ValueError(
            f"{_describe(file)}key 'ismrmrd_header': expected element '{path}' in the "
            f"ISMRMRD header (namespace {ISMRMRD_NAMESPACE}), found none"
        )
    return element


def _number(root: ET.Element, path: str, file, kind=float, required: bool = True):
    element = _find(root, path, file, required)
    if element is None:
        return None
    text = (element.text or "").strip()
    try:
        return kind(float(text)) if kind is int else kind(text)
    except ValueError:
        raise ValueError(
            f"{_describe(file)}key 'ismrmrd_header': expected a number at '{path}', found {text!r}"
        ) from None


def _triple(root: ET.Element, path: str, file, kind) -> tuple:
    return tuple(_number(root, f"{path}/{axis}", file, kind) for axis in ("x", "y", "z"))


def parse_ismrmrd_header(
    xml: Union[bytes, str], file: Union[str, os.PathLike, None] = None
) -> FastMRIHeader:
    """Parse the fields of an ISMRMRD XML header that fastMRI reconstruction needs.

    Args:
        xml: the header as bytes or str (the content of a fastMRI ``ismrmrd_header``).
        file: the file it came from, named in error messages.

    Returns:
        the :class:`FastMRIHeader`.

    Raises:
        ValueError: the text is not XML, or a required element (encoded/recon matrix and
            field of view) is missing or not a number.
    """
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as error:
        head = xml[:40] if isinstance(xml, (bytes, str)) else type(xml).__name__
        raise ValueError(
            f"{_describe(file)}key 'ismrmrd_header': expected ISMRMRD XML, found text that "
            f"does not parse ({error}); it starts with {head!r}"
        ) from None
    limits = "encoding/encodingLimits/kspace_encoding_step_1"
    return FastMRIHeader(
        encoded_matrix=_triple(root, "encoding/encodedSpace/matrixSize", file, int),
        recon_matrix=_triple(root, "encoding/reconSpace/matrixSize", file, int),
        encoded_fov_mm=_triple(root, "encoding/encodedSpace/fieldOfView_mm", file, float),
        recon_fov_mm=_triple(root, "encoding/reconSpace/fieldOfView_mm", file, float),
        kspace_center=_number(root, f"{limits}/center", file, int, required=False),
        kspace_max=_number(root, f"{limits}/maximum", file, int, required=False),
    )


def _xyz(parent: ET.Element, tag: str, values: Sequence[float], kind) -> None:
    if len(values) != 3:
        raise ValueError(f"header field '{tag}': expected 3 values (x, y, z), found {len(values)}")
    element = ET.SubElement(parent, tag)
    for axis, value in zip(("x", "y", "z"), values):
        ET.SubElement(element, axis).text = str(kind(value))


def make_ismrmrd_header(
    encoded_matrix: Sequence[int],
    recon_matrix: Sequence[int],
    encoded_fov_mm: Sequence[float],
    recon_fov_mm: Sequence[float],
    kspace_center: Optional[int] = None,
    kspace_max: Optional[int] = None,
) -> str:
    """Build a minimal ISMRMRD XML header with the fields fastMRI files carry.

    Args:
        encoded_matrix: acquired matrix ``(x, y, z)``; x = k-space rows (readout).
        recon_matrix: reconstructed matrix ``(x, y, z)``.
        encoded_fov_mm: encoded field of view in mm ``(x, y, z)``.
        recon_fov_mm: reconstructed field of view in mm ``(x, y, z)``.
        kspace_center: centre phase-encode line; defaults to ``encoded_matrix[1] // 2``.
        kspace_max: last acquired phase-encode line; defaults to ``encoded_matrix[1] - 1``.

    Returns:
        the XML document as str, readable by :func:`parse_ismrmrd_header`.
    """
    ET.register_namespace("", ISMRMRD_NAMESPACE)
    q = f"{{{ISMRMRD_NAMESPACE}}}"
    root = ET.Element(f"{q}ismrmrdHeader")
    encoding = ET.SubElement(root, f"{q}encoding")
    for space, matrix, fov in (
        ("encodedSpace", encoded_matrix, encoded_fov_mm),
        ("reconSpace", recon_matrix, recon_fov_mm),
    ):
        element = ET.SubElement(encoding, f"{q}{space}")
        _xyz(element, f"{q}matrixSize", matrix, int)
        _xyz(element, f"{q}fieldOfView_mm", fov, float)
    ET.SubElement(encoding, f"{q}trajectory").text = "cartesian"
    limits = ET.SubElement(ET.SubElement(encoding, f"{q}encodingLimits"), f"{q}kspace_encoding_step_1")
    center = encoded_matrix[1] // 2 if kspace_center is None else kspace_center
    maximum = encoded_matrix[1] - 1 if kspace_max is None else kspace_max
    for tag, value in (("minimum", 0), ("maximum", maximum), ("center", center)):
        ET.SubElement(limits, f"{q}{tag}").text = str(int(value))
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode")
