"""units.human_bytes: the one way sizes are written."""

import pytest

from ansible_collections.codacy.selfhosted.plugins.module_utils.units import human_bytes


@pytest.mark.parametrize("size, text", [
    (None, "0 B"), (0, "0 B"), (1023, "1023 B"), (1024, "1.0 kB"), (1536, "1.5 kB"), (1024 ** 2 - 1, "1024.0 kB"),
    (12 * 1024 ** 3, "12.0 GB"), (2 * 1024 ** 4, "2.0 TB"), (2048 * 1024 ** 4, "2048.0 TB"),
])
def test_human_bytes(size, text):
    assert human_bytes(size) == text
