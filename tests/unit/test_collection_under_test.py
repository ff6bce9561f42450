"""The tests import and run this checkout's collection, not another copy found first on some path.

pytest-ansible, if it runs, links the checkout into ./collections/ and puts that first; links made
in another checkout (they were once committed) then lead to that checkout's code. pytest.ini turns
it off; tests/conftest.py links the checkout under build/collections.
"""

import os

from ansible_collections.codacy.selfhosted.plugins import module_utils

ROOT = os.path.realpath(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def test_the_collection_is_imported_from_this_checkout():
    assert [os.path.realpath(path) for path in module_utils.__path__] == [os.path.join(ROOT, "plugins", "module_utils")]


def test_ansible_finds_the_collection_through_build_collections():
    collections = os.environ["ANSIBLE_COLLECTIONS_PATH"].split(os.pathsep)[0]
    assert os.path.realpath(os.path.join(collections, "ansible_collections", "codacy", "selfhosted")) == ROOT
