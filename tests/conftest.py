"""The suite never reads or writes the user's object cache or HMAC key (~/.cache/graphc, ~/.config/graphc)."""
import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def private_object_cache_and_key(tmp_path_factory):
    """Session-wide, so a program one test compiled is still cached for the next; tests may override either."""
    home = tmp_path_factory.mktemp("graphc-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRAPHC_CACHE_DIR", str(home / "objects"))
        patch.setenv("XDG_CONFIG_HOME", str(home / "config"))
        yield


@pytest.fixture
def umask_000():
    """A process umask of 000 for one test: what graphc creates must still be private."""
    previous = os.umask(0)
    yield
    os.umask(previous)
