"""The committed replay file is what its script derives from the LOBSTER sample."""
from __future__ import annotations

import hashlib

import pytest

from sim.data import derive_msft


@pytest.mark.skipif(not derive_msft.SOURCE.exists(), reason="../shared/data not beside the repo")
def test_replay_file_is_derived_from_the_lobster_sample(tmp_path, monkeypatch):
    """Derive the file again and compare bytes: the committed data has a known source."""
    committed = hashlib.sha256(derive_msft.OUT.read_bytes()).hexdigest()
    monkeypatch.setattr(derive_msft, "OUT", tmp_path / derive_msft.OUT.name)
    assert derive_msft.derive(derive_msft.SOURCE) == (89_575, 7_165)
    assert hashlib.sha256(derive_msft.OUT.read_bytes()).hexdigest() == committed
