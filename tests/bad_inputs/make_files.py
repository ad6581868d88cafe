"""Rebuild the corpus's binary files from pydicom's own real test files (run from the repository
root: ``.venv/bin/python tests/bad_inputs/make_files.py``). The files are committed; this script
records how they were made."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import tifffile
from pydicom import dcmread, examples

FILES = Path(__file__).parent / "files"


def main() -> None:
    shutil.rmtree(FILES, ignore_errors=True)
    ct = Path(examples.get_path("ct"))  # CT_small.dcm: a real 128 x 128 CT slice

    (FILES / "ct-one-slice").mkdir(parents=True)
    shutil.copy(ct, FILES / "ct-one-slice" / "slice.dcm")

    (FILES / "not-dicom").mkdir()
    (FILES / "not-dicom" / "slice.dcm").write_text("This is a radiology report, not an image.\n")
    (FILES / "not-dicom" / "notes.txt").write_text("scanned at 09:12\n")

    (FILES / "forged-preamble").mkdir()
    (FILES / "forged-preamble" / "slice.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 64)

    (FILES / "truncated-dicom").mkdir()
    data = ct.read_bytes()
    (FILES / "truncated-dicom" / "slice.dcm").write_bytes(data[: len(data) * 2 // 3])

    (FILES / "absurd-dimensions").mkdir()
    ds = dcmread(ct)
    ds.Rows, ds.Columns = 60000, 60000
    ds.save_as(FILES / "absurd-dimensions" / "slice.dcm")

    (FILES / "forged-frames").mkdir()
    ds = dcmread(ct)  # each dimension within 8192, a terabyte once decoded
    ds.Rows, ds.Columns, ds.NumberOfFrames = 8192, 8192, 8192
    ds.save_as(FILES / "forged-frames" / "slice.dcm")

    (FILES / "wrong-modality").mkdir()
    shutil.copy(examples.get_path("mr"), FILES / "wrong-modality" / "slice.dcm")  # a real MR

    (FILES / "escape-link").symlink_to("/etc")  # a link inside the data roots leading out

    (FILES / "not-a-slide").mkdir()
    (FILES / "not-a-slide" / "slide.tiff").write_text("II*\0 this is not a TIFF at all\n")
    shutil.copy(
        Path(examples.get_path("ct")).with_name("CT_small.dcm"),
        FILES / "not-a-slide" / "scan.svs",  # a DICOM file named like a slide
    )

    (FILES / "slide-mpp-infinite").mkdir()
    with tifffile.TiffWriter(FILES / "slide-mpp-infinite" / "slide.svs") as tif:
        tif.write(  # an Aperio-style slide whose header records an infinite resolution
            np.full((256, 256, 3), 200, np.uint8),
            tile=(256, 256),
            photometric="rgb",
            compression="zlib",
            metadata=None,
            description="Aperio Image Library v12.0.0\r\n256x256 (256x256) RGB|AppMag = 20|"
            "MPP = inf",
        )


if __name__ == "__main__":
    main()
