"""Fixtures: plugins folders made of the guest components the host's build
compiled (`HOOKHOST_GUEST_DIR`, set by `integrations/python/run-tests.sh`)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

import pytest


@pytest.fixture(scope="session")
def guest_dir() -> Path:
    value = os.environ.get("HOOKHOST_GUEST_DIR")
    if not value:
        pytest.fail(
            "HOOKHOST_GUEST_DIR is not set: run the tests with "
            "integrations/python/run-tests.sh, which builds the guests and sets it"
        )
    return Path(value)


@pytest.fixture
def plugins(tmp_path: Path, guest_dir: Path) -> Callable[..., Path]:
    """`plugins(name=fixture, ...)`: a folder holding the fixture component
    `fixtures/<fixture>.wasm` (or `plugins/<fixture>.wasm`) as `<name>.wasm`."""

    def make(**components: str) -> Path:
        folder = tmp_path / "plugins"
        folder.mkdir(exist_ok=True)
        for name, component in components.items():
            source = guest_dir / "fixtures" / f"{component}.wasm"
            if not source.exists():
                source = guest_dir / "plugins" / f"{component}.wasm"
            shutil.copy(source, folder / f"{name}.wasm")
        return folder

    return make
