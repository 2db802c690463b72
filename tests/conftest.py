"""Shared fixtures: a real daemon behind a real waitress server on a free port."""
from __future__ import annotations

import contextlib

import pytest

from tests.support.server import make_settings, running


@pytest.fixture
def datamint():
    """A faithful Datamint on loopback: (the fake, its base URL)."""
    from tests.support.fake_datamint import FakeDatamint
    from tests.support.loopback import serving_fake

    with serving_fake(FakeDatamint()) as served:
        yield served


@pytest.fixture
def serve(tmp_path):
    """serve(**sections) starts a daemon with those settings over the test defaults."""
    with contextlib.ExitStack() as stack:
        def start(state_dir=None, prepare=None, **sections):
            settings = make_settings(state_dir or tmp_path / "state", **sections)
            return stack.enter_context(running(settings, prepare=prepare))
        yield start


from tests.support.pki import pki  # noqa: E402,F401  (a fixture for the HTTPS tests)
