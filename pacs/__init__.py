"""The hospital side of irtmon: Orthanc as the PACS and dcmtk's storescu as the scanner.

- :mod:`pacs.study`: a stable study's series in, one ``imaging.acquired`` event out (pure).
- :mod:`pacs.orthanc_plugin`: the Orthanc Python plugin that publishes it when a study is
  stable (runs inside Orthanc, started by ``irtmon stack up --with-pacs``).
- :mod:`pacs.send`: send a folder of DICOM files to a PACS with ``storescu``.
"""
