"""dbprops: parsing of stored settings."""

import pytest

from ansible_collections.codacy.selfhosted.plugins.module_utils import dbprops


class TestSettings:
    @pytest.mark.parametrize("stored, names", [
        ('"$user", public', ["$user", "public"]),
        ('a, "b,c", "d""e"', ["a", "b,c", 'd"e']),
        ("single", ["single"]),
        ("", []),
    ])
    def test_split_guc_list(self, stored, names):
        assert dbprops.split_guc_list(stored) == names
