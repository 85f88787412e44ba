"""The application layer: reconstruction runs over files, outputs, reports, the bundle's parts.

- :mod:`.reconstructor`: :class:`Reconstructor` (one volume: scan, mask, preprocessing,
  initializer, CCDF inferer, postprocessing; many: discovery, names, resume, report);
- :mod:`.postprocessing`: the postprocessing ``Compose`` (unscale, magnitude, crop, write);
- :mod:`.writer`: :class:`VolumeWriter` (NIfTI / submission h5 / DICOM / std map, provenance);
- :mod:`.report`: per-volume results, the run report and its table;
- :mod:`.build`: the parts from a bundle config (what the CLI runs);
- :mod:`.engine`: the bundle's evaluator, a MONAI engine (needs pytorch-ignite; only the
  bundle imports it);
- :mod:`.bundle`: where the shipped bundle is.

Nothing here imports training code (``ccdf_mri.engines``) or pytorch-ignite, except
:mod:`.engine`.
"""
