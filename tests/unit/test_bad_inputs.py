"""Each case of the bad-input corpus (tests/bad_inputs) is refused with its clear error by the
steps a worker runs: the contract parser, the data-roots check, the DICOM and slide readers.
The same corpus goes through a real worker in tests/integration/test_bad_inputs_worker.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.pathology.slide import base_mpp, open_slide
from schemas import BiopsyAcquired, ImagingAcquired, parse_event, pseudonymise
from schemas.topics import TOPICS
from streams import scoring
from tests.bad_inputs.corpus import Case, copy_files, load_cases


def refusal(case: Case, roots: list[Path]) -> BaseException | None:
    """The first error the worker's steps raise on ``case`` (None: accepted)."""
    try:
        event = parse_event(TOPICS[case.topic].record, case.payload)
        if isinstance(event, ImagingAcquired):
            scoring.score_imaging(scoring.imaging_request(event, roots))
        elif isinstance(event, BiopsyAcquired):
            for path in scoring.biopsy_request(event, roots).slide_paths:
                base_mpp(open_slide(path), path)
    except Exception as err:
        return err
    return None


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Case], list[Path]]:
    root = tmp_path_factory.mktemp("data-root")
    files = copy_files(root)
    return load_cases(files, lambda name: pseudonymise(name, "bad-input-key-0123456789")), [root]


def test_the_corpus_covers_every_kind_of_bad_input(cases: tuple[list[Case], list[Path]]) -> None:
    names = {c.name for c in cases[0]}
    for kind in (
        "malformed-json",
        "wrong-type-dose",
        "huge-string",
        "unknown-schema-version",
        "unknown-patient",
        "path-traversal",
        "not-dicom",
        "truncated-dicom",
        "absurd-dimensions",
        "forged-frames",
        "wrong-modality",
        "slide-not-tiff",
        "slide-mpp-infinite",
    ):
        assert kind in names
    assert len(names) == len(cases[0]), "case names are unique"


def test_each_bad_input_is_refused_with_its_reason(cases: tuple[list[Case], list[Path]]) -> None:
    corpus, roots = cases
    wrong = []
    for case in corpus:
        err = refusal(case, roots)
        if (
            err is None
            or type(err).__name__ != case.error_class
            or case.reason not in str(err)
            or len(str(err)) > 20_000  # a refusal names the problem, it does not echo the input
        ):
            wrong.append(f"{case.name} ({case.what}): {type(err).__name__}: {str(err)[:300]}")
    assert not wrong, "\n".join(wrong)
