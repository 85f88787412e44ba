"""One voxel-to-patient geometry for every output format of a reconstructed volume.

A reconstructed volume is an array ``(S, H, W)``: slice ``k``, row ``i`` (readout, ISMRMRD
x), column ``j`` (phase encode, ISMRMRD y). :func:`volume_geometry` builds ONE 4x4 affine
``index (i, j, k, 1) -> patient mm`` from which both the NIfTI affine (RAS) and the DICOM
Image Plane tags (LPS) are derived, so both formats place every pixel at the same point.

Convention (fastMRI files carry no per-slice position or orientation, so these are
assumptions, stated here once):

- **Display**: the array as displayed with row 0 at the top and column 0 at the left (as
  ``matplotlib.pyplot.imshow`` shows fastMRI images) is the standard radiological view of
  the slice plane. In DICOM terms (LPS patient axes: +x left, +y posterior, +z superior)
  the direction of increasing column index ``X`` and of increasing row index ``Y`` are:

  ============  ==============  ===============  =============================
  plane         ``X`` (across)  ``Y`` (down)     slices step along ``X x Y``
  ============  ==============  ===============  =============================
  axial         +x (left)       +y (posterior)   +z (superior)
  coronal       +x (left)       -z (inferior)    +y (posterior)
  sagittal      +y (posterior)  -z (inferior)    -x (right)
  ============  ==============  ===============  =============================

  The plane is ``axial`` unless the caller says otherwise (``ScanInfo.plane`` guesses it
  from the protocol name: fastMRI knee ``COR...`` files are coronal, brain ``AX...`` axial).
  The patient position (``HFS``, ``FFS``, ...) does not enter: the axes above are defined
  relative to the patient, as scanners reconstruct them; it is recorded in the DICOM
  PatientPosition tag only.
- **Spacing**: rows ``recon_fov_x / recon_matrix_x``, columns ``recon_fov_y /
  recon_matrix_y`` (``FastMRIHeader.pixel_spacing_mm``), slices the slice thickness
  ``recon_fov_z / recon_matrix_z`` with contiguous slices (spacing = thickness: the gap is
  not in the file); 1 mm everywhere without a header.
- **Position**: the volume is centred on the patient origin (the isocentre): the centre
  of the middle voxel, index ``((H-1)/2, (W-1)/2, (S-1)/2)``, is at (0, 0, 0) mm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from ccdf_mri.io.header import FastMRIHeader

# (X, Y) in LPS: X = direction of increasing column index, Y = of increasing row index.
PLANE_AXES: Dict[str, Tuple[Tuple[float, float, float], Tuple[float, float, float]]] = {
    "axial": ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
    "coronal": ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0)),
    "sagittal": ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0)),
}
DEFAULT_PLANE = "axial"
# LPS <-> RAS: negate x and y (its own inverse).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def volume_spacing(header: Optional[FastMRIHeader]) -> Tuple[float, float, float]:
    """``(row spacing, column spacing, slice spacing)`` in mm from the header (1 mm without one)."""
    if header is None:
        return 1.0, 1.0, 1.0
    return (*header.pixel_spacing_mm, header.slice_thickness_mm)


@dataclass(frozen=True)
class VolumeGeometry:
    """Where each voxel of a volume ``(S, H, W)`` lies in patient space.

    Attributes:
        shape: ``(S, H, W)``.
        spacing: ``(row, column, slice)`` spacing in mm.
        plane: ``"axial"``, ``"coronal"`` or ``"sagittal"``.
        lps: 4x4 affine mapping ``(row i, column j, slice k, 1)`` to LPS mm (DICOM).
    """

    shape: Tuple[int, int, int]
    spacing: Tuple[float, float, float]
    plane: str
    lps: np.ndarray

    @property
    def ras(self) -> np.ndarray:
        """4x4 affine ``(i, j, k, 1) -> RAS mm`` (NIfTI / nibabel), i.e. ``LPS_TO_RAS @ lps``."""
        return LPS_TO_RAS @ self.lps

    @property
    def nifti_affine(self) -> np.ndarray:
        """The NIfTI affine of the array ``(H, W, S)`` with ``data[:, :, k] = volume[k]``
        (same index order as :attr:`ras`)."""
        return self.ras

    @property
    def row_direction(self) -> np.ndarray:
        """DICOM row direction cosine ``X`` (LPS unit vector of increasing column index)."""
        return self.lps[:3, 1] / self.spacing[1]

    @property
    def column_direction(self) -> np.ndarray:
        """DICOM column direction cosine ``Y`` (LPS unit vector of increasing row index)."""
        return self.lps[:3, 0] / self.spacing[0]

    @property
    def normal(self) -> np.ndarray:
        """Slice direction ``X x Y`` (LPS unit vector of increasing slice index)."""
        return self.lps[:3, 2] / self.spacing[2]

    def index_to_lps(self, indices) -> np.ndarray:
        """LPS mm of voxel indices ``(..., 3)`` ordered ``(row, column, slice)``."""
        points = np.asarray(indices, dtype=np.float64)
        return points @ self.lps[:3, :3].T + self.lps[:3, 3]

    def index_to_ras(self, indices) -> np.ndarray:
        """RAS mm of voxel indices ``(..., 3)`` ordered ``(row, column, slice)``."""
        return self.index_to_lps(indices) * np.array([-1.0, -1.0, 1.0])

    def dicom_plane(self, index: int) -> Dict[str, object]:
        """The DICOM Image Plane values of slice ``index`` (floats; the writer formats them).

        Returns:
            ``ImagePositionPatient`` (LPS mm of the centre of pixel (0, 0) of the slice),
            ``ImageOrientationPatient`` (``X`` then ``Y``), ``PixelSpacing`` (``[row spacing,
            column spacing]``, i.e. between rows then between columns), ``SliceThickness``,
            ``SpacingBetweenSlices`` and ``SliceLocation`` (position along :attr:`normal`).
        """
        if not 0 <= index < self.shape[0]:
            raise IndexError(f"slice {index} out of range for {self.shape[0]} slices")
        position = self.index_to_lps([0.0, 0.0, float(index)])
        return {
            "ImagePositionPatient": [float(v) for v in position],
            "ImageOrientationPatient": [float(v) for v in (*self.row_direction, *self.column_direction)],
            "PixelSpacing": [float(self.spacing[0]), float(self.spacing[1])],
            "SliceThickness": float(self.spacing[2]),
            "SpacingBetweenSlices": float(self.spacing[2]),
            "SliceLocation": float(position @ self.normal),
        }


def volume_geometry(
    shape: Sequence[int],
    header: Optional[FastMRIHeader] = None,
    plane: Optional[str] = None,
) -> VolumeGeometry:
    """The geometry of a volume ``(S, H, W)`` under the module's convention.

    Args:
        shape: ``(S, H, W)`` of the volume as written (after any crop).
        header: the acquisition's header for the spacing (None: 1 mm).
        plane: ``"axial"`` (default when None), ``"coronal"`` or ``"sagittal"``.

    Returns:
        the :class:`VolumeGeometry`.
    """
    if len(shape) != 3:
        raise ValueError(f"shape: expected (slices, rows, cols), found {tuple(shape)}")
    plane = plane or DEFAULT_PLANE
    if plane not in PLANE_AXES:
        raise ValueError(f"plane: expected one of {tuple(PLANE_AXES)}, found {plane!r}")
    num_slices, rows, cols = (int(n) for n in shape)
    spacing = tuple(float(s) for s in volume_spacing(header))
    across, down = (np.asarray(v) for v in PLANE_AXES[plane])
    normal = np.cross(across, down)
    lps = np.eye(4)
    lps[:3, 0] = down * spacing[0]
    lps[:3, 1] = across * spacing[1]
    lps[:3, 2] = normal * spacing[2]
    centre = np.array([(rows - 1) / 2.0, (cols - 1) / 2.0, (num_slices - 1) / 2.0])
    lps[:3, 3] = -lps[:3, :3] @ centre
    return VolumeGeometry((num_slices, rows, cols), spacing, plane, lps)
