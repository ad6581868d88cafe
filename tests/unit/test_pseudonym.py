from __future__ import annotations

import pytest

from schemas import is_pseudonym, pseudonymise

KEY = "k" * 32


def test_pseudonym_is_keyed_stable_and_shaped() -> None:
    a = pseudonymise("MRN-123", KEY)
    assert is_pseudonym(a)
    assert a == pseudonymise(" MRN-123 ", KEY)
    assert a != pseudonymise("MRN-124", KEY)
    assert a != pseudonymise("MRN-123", "z" * 32)
    assert "123" not in a.removeprefix("psn-") or a != "psn-MRN-123"


def test_pseudonym_refuses_empty_or_short_keys() -> None:
    with pytest.raises(ValueError, match="empty"):
        pseudonymise("  ", KEY)
    with pytest.raises(ValueError, match="IRTMON_PSEUDONYM_KEY"):
        pseudonymise("MRN-1", "short")
