"""A library named with ``deferred_import`` is imported at its first attribute read, not before."""

import copy
import pickle
import subprocess
import sys

import pytest

from lithotse_desktop.deferred import deferred_import


def run_python(code: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_the_module_is_imported_at_the_first_attribute_read_and_its_attributes_are_its_own():
    code = ("import sys; from lithotse_desktop.deferred import deferred_import; "
            "m = deferred_import('xml.dom.minidom'); print('xml.dom.minidom' in sys.modules); "
            "f = m.parseString; print('xml.dom.minidom' in sys.modules); "
            "import xml.dom.minidom as real; print(f is real.parseString, m.Node is real.Node)")
    assert run_python(code) == ["False", "True", "True", "True"]


def test_a_plain_import_elsewhere_leaves_the_deferred_name_working():
    code = ("from lithotse_desktop.deferred import deferred_import; m = deferred_import('xml.dom.minidom'); "
            "import xml.dom.minidom as real; print(m.parseString('<a/>').documentElement.tagName)")
    assert run_python(code) == ["a"]


def test_a_missing_module_fails_at_the_first_read_as_its_import_would():
    missing = deferred_import("lithotse_no_such_module")
    assert "lithotse_no_such_module" in repr(missing)
    with pytest.raises(ModuleNotFoundError, match="lithotse_no_such_module"):
        _ = missing.anything
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = deferred_import("json").no_such_name


def test_a_copied_or_unpickled_stand_in_still_names_its_module():
    """copy and pickle probe a new, empty instance before its state is set: no endless lookup."""
    json_module = deferred_import("json")
    for other in (copy.copy(json_module), copy.deepcopy(json_module), pickle.loads(pickle.dumps(json_module))):
        assert other.loads("[1]") == [1]
