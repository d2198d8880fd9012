"""Task declarations: parent labels derived from children; bad declarations name their key."""

import numpy as np
import pytest

from fashionlab.errors import ConfigError
from fashionlab.tasks import derive_parent_targets, tasks_from_config

TASKS = {
    "item": {"kind": "multiclass", "classes": ["sandal", "boot", "jeans"], "parent": "primary",
             "parent_of": {"sandal": "shoes", "boot": "shoes", "jeans": "trousers"}},
    "primary": {"kind": "multiclass", "classes": ["shoes", "trousers"]},
}


def test_parent_labels_are_derived():
    tasks = tasks_from_config(TASKS)
    out = derive_parent_targets(tasks, {"item": np.array([0, 2, 1, -1])})
    np.testing.assert_array_equal(out["primary"], [0, 1, 0, -1])


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"item": {**TASKS["item"], "kind": "regression"}}, r"data\.tasks\.item\.kind"),
        ({"item": {**TASKS["item"], "parent": "colour"}}, r"data\.tasks\.item\.parent names unknown"),
        ({"item": {**TASKS["item"], "parent_of": {"sandal": "shoes", "boot": "shoes"}}},
         r"parent_of has no parent for: jeans"),
        ({"item": {**TASKS["item"], "parent_of": {**TASKS["item"]["parent_of"], "jeans": "hats"}}},
         r"'hats', which is not a class of task 'primary'"),
        ({"primary": {"kind": "multiclass", "classes": ["shoes", "shoes", "trousers"]}},
         r"data\.tasks\.primary\.classes repeats shoes"),
    ],
)
def test_bad_declarations(patch, message):
    with pytest.raises(ConfigError, match=message):
        tasks_from_config({**TASKS, **patch})


def test_unknown_class_name():
    task = tasks_from_config(TASKS)[0]
    with pytest.raises(ConfigError, match="unknown class 'loafer' for task 'item'"):
        task.class_index("loafer")
