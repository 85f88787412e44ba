"""Descriptive facts of an acquisition (patient, study, scanner, sequence) for output metadata.

The ISMRMRD XML header may hold, besides the encoding geometry of
:mod:`ccdf_mri.io.header`, optional sections that the DICOM writer needs:

- ``subjectInformation``: ``patientName``, ``patientID``, ``patientBirthdate``, ``patientGender``;
- ``studyInformation``: ``studyDate``, ``studyTime``, ``studyID``, ``accessionNumber``,
  ``referringPhysicianName``, ``studyDescription``;
- ``measurementInformation``: ``patientPosition`` (``HFS``, ``FFS``, ...), ``protocolName``;
- ``acquisitionSystemInformation``: ``systemVendor``, ``systemModel``,
  ``systemFieldStrength_T``, ``institutionName``;
- ``sequenceParameters``: ``TR``, ``TE``, ``TI`` (ms), ``flipAngle_deg``;
  ``encoding/echoTrainLength``.

fastMRI files are anonymised: most of these are absent, and the patient is identified by
the file attribute ``patient_id`` (a hash). :func:`read_scan_info` gathers what is there;
what is not stays None and the DICOM writer leaves the (type 2) tag empty.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace
from typing import Any, Mapping, Optional, Union

from ccdf_mri.io.header import ISMRMRD_NAMESPACE

PLANES = ("axial", "coronal", "sagittal")
# DICOM Patient Position (0018,5100) enumerated values; ISMRMRD uses the same codes.
PATIENT_POSITIONS = ("HFP", "HFS", "HFDR", "HFDL", "FFDR", "FFDL", "FFP", "FFS", "LFP", "LFS", "RFP", "RFS", "AFDR", "AFDL", "PFDR", "PFDL")
# Protocol / acquisition name prefixes (fastMRI: "CORPD_FBK", "AXT2", "AXFLAIR", ...).
_PLANE_PREFIXES = (("COR", "coronal"), ("SAG", "sagittal"), ("AX", "axial"), ("TRA", "axial"))


def guess_slice_plane(*names: Optional[str]) -> Optional[str]:
    """Slice plane from a protocol or acquisition name, or None when no name says.

    The first name that starts (case-insensitively) with ``COR`` gives ``"coronal"``, with
    ``SAG`` ``"sagittal"``, with ``AX`` or ``TRA`` ``"axial"`` (fastMRI knee files are
    ``CORPD_FBK`` / ``CORPDFS_FBK``, brain files ``AXT1``, ``AXT2``, ``AXFLAIR``, ...).
    """
    for name in names:
        text = (name or "").strip().upper()
        for prefix, plane in _PLANE_PREFIXES:
            if text.startswith(prefix):
                return plane
    return None


@dataclass(frozen=True)
class ScanInfo:
    """What is known about the patient, study, scanner and sequence of one volume.

    Every field is optional (None = unknown). Dates are DICOM ``YYYYMMDD``, times ``HHMMSS``.

    Attributes:
        patient_id, patient_name, patient_birth_date, patient_sex: patient (sex ``M``/``F``/``O``).
        study_date, study_time, study_id, accession_number, referring_physician,
        study_description: the study the raw data belong to.
        patient_position: DICOM Patient Position (``HFS``, ``FFS``, ``HFP``, ...).
        protocol_name: the sequence protocol (``measurementInformation/protocolName``).
        acquisition: the fastMRI ``acquisition`` attribute (e.g. ``CORPD_FBK``).
        manufacturer, model, institution, field_strength_t: the scanner.
        repetition_time_ms, echo_time_ms, inversion_time_ms, flip_angle_deg,
        echo_train_length: sequence parameters.
        slice_plane: ``"axial"``, ``"coronal"`` or ``"sagittal"`` when given explicitly;
            see :attr:`plane`.
    """

    patient_id: Optional[str] = None
    patient_name: Optional[str] = None
    patient_birth_date: Optional[str] = None
    patient_sex: Optional[str] = None
    study_date: Optional[str] = None
    study_time: Optional[str] = None
    study_id: Optional[str] = None
    accession_number: Optional[str] = None
    referring_physician: Optional[str] = None
    study_description: Optional[str] = None
    patient_position: Optional[str] = None
    protocol_name: Optional[str] = None
    acquisition: Optional[str] = None
    manufacturer: Optional[str] = None
    model: Optional[str] = None
    institution: Optional[str] = None
    field_strength_t: Optional[float] = None
    repetition_time_ms: Optional[float] = None
    echo_time_ms: Optional[float] = None
    inversion_time_ms: Optional[float] = None
    flip_angle_deg: Optional[float] = None
    echo_train_length: Optional[int] = None
    slice_plane: Optional[str] = None

    def __post_init__(self) -> None:
        if self.slice_plane is not None and self.slice_plane not in PLANES:
            raise ValueError(f"slice_plane: expected one of {PLANES}, found {self.slice_plane!r}")

    @property
    def plane(self) -> Optional[str]:
        """The slice plane: :attr:`slice_plane`, else guessed from :attr:`acquisition` and
        :attr:`protocol_name` (:func:`guess_slice_plane`), else None (writers then use axial)."""
        return self.slice_plane or guess_slice_plane(self.acquisition, self.protocol_name)

    def with_overrides(self, **fields: Any) -> "ScanInfo":
        """A copy with the given fields replaced; None values are ignored (keep the current one)."""
        return replace(self, **{key: value for key, value in fields.items() if value is not None})


def _text(root: ET.Element, path: str) -> Optional[str]:
    element = root.find("/".join(f"ismrmrd:{part}" for part in path.split("/")), {"ismrmrd": ISMRMRD_NAMESPACE})
    if element is None or element.text is None or not element.text.strip():
        return None
    return element.text.strip()


def _float(text: Optional[str]) -> Optional[float]:
    try:
        return None if text is None else float(text)
    except ValueError:
        return None


def _int(text: Optional[str]) -> Optional[int]:
    value = _float(text)
    return None if value is None else int(value)


def _date(text: Optional[str]) -> Optional[str]:
    """ISMRMRD ``YYYY-MM-DD`` (xs:date) -> DICOM ``YYYYMMDD``; None when not of that form."""
    digits = (text or "").replace("-", "")[:8]
    return digits if len(digits) == 8 and digits.isdigit() else None


def _time(text: Optional[str]) -> Optional[str]:
    """ISMRMRD ``HH:MM:SS[.ffffff]`` (xs:time) -> DICOM ``HHMMSS[.ffffff]``; None when malformed."""
    if not text:
        return None
    main, _, fraction = text.partition(".")
    digits = main.replace(":", "")
    if len(digits) != 6 or not digits.isdigit():
        return None
    fraction = "".join(ch for ch in fraction if ch.isdigit())[:6]
    return f"{digits}.{fraction}" if fraction else digits


def _sex(text: Optional[str]) -> Optional[str]:
    value = (text or "").strip().upper()[:1]
    return value if value in ("M", "F", "O") else None


def _position(text: Optional[str]) -> Optional[str]:
    value = (text or "").strip().upper()
    return value if value in PATIENT_POSITIONS else None


def _attr(attrs: Mapping[str, Any], key: str) -> Optional[str]:
    value = attrs.get(key)
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    text = str(value).strip()
    return text or None


def read_scan_info(
    header_xml: Union[str, bytes, None],
    attrs: Optional[Mapping[str, Any]] = None,
    patient_id: Optional[str] = None,
    patient_name: Optional[str] = None,
    slice_plane: Optional[str] = None,
) -> ScanInfo:
    """Gather the :class:`ScanInfo` of a volume from its ISMRMRD XML and file attributes.

    Precedence for the patient: the explicit arguments (e.g. a ``--patient-id`` flag), then
    the file attributes ``patient_id`` / ``patient_name``, then the XML
    ``subjectInformation``. The patient name defaults to the patient ID when only the ID is
    known (as before this module). Unparsable optional values are treated as absent: this
    reads metadata, the geometry the reconstruction needs is validated elsewhere.

    Args:
        header_xml: the ``ismrmrd_header`` content (None: no XML facts).
        attrs: the fastMRI file attributes (``FastMRIVolume.attrs``), e.g. ``patient_id``,
            ``acquisition``.
        patient_id: overrides every other source of the patient ID.
        patient_name: overrides every other source of the patient name.
        slice_plane: ``"axial"``, ``"coronal"`` or ``"sagittal"`` to override the plane guess.

    Returns:
        the :class:`ScanInfo` (None where unknown).
    """
    attrs = dict(attrs or {})
    root = None
    if header_xml:
        try:
            root = ET.fromstring(header_xml)
        except ET.ParseError:
            root = None
    get = (lambda path: _text(root, path)) if root is not None else (lambda path: None)
    pid = patient_id or _attr(attrs, "patient_id") or get("subjectInformation/patientID")
    name = patient_name or _attr(attrs, "patient_name") or get("subjectInformation/patientName") or pid
    return ScanInfo(
        patient_id=pid,
        patient_name=name,
        patient_birth_date=_date(get("subjectInformation/patientBirthdate")),
        patient_sex=_sex(get("subjectInformation/patientGender")),
        study_date=_date(get("studyInformation/studyDate")),
        study_time=_time(get("studyInformation/studyTime")),
        study_id=get("studyInformation/studyID"),
        accession_number=get("studyInformation/accessionNumber"),
        referring_physician=get("studyInformation/referringPhysicianName"),
        study_description=get("studyInformation/studyDescription"),
        patient_position=_position(get("measurementInformation/patientPosition")),
        protocol_name=get("measurementInformation/protocolName"),
        acquisition=_attr(attrs, "acquisition"),
        manufacturer=get("acquisitionSystemInformation/systemVendor"),
        model=get("acquisitionSystemInformation/systemModel"),
        institution=get("acquisitionSystemInformation/institutionName"),
        field_strength_t=_float(get("acquisitionSystemInformation/systemFieldStrength_T")),
        repetition_time_ms=_float(get("sequenceParameters/TR")),
        echo_time_ms=_float(get("sequenceParameters/TE")),
        inversion_time_ms=_float(get("sequenceParameters/TI")),
        flip_angle_deg=_float(get("sequenceParameters/flipAngle_deg")),
        echo_train_length=_int(get("encoding/echoTrainLength")),
        slice_plane=slice_plane,
    )
