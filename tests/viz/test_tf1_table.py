"""docs/tf1_to_graphc.md stays true: every gc.name it mentions exists."""
import re
from pathlib import Path

import graphc as gc

DOC = Path(__file__).resolve().parents[2] / "docs" / "tf1_to_graphc.md"


def test_every_graphc_name_in_the_tf1_table_exists():
    names = set(re.findall(r"`gc\.(\w+)", DOC.read_text())) | set(re.findall(r"gc\.(\w+)\(", DOC.read_text()))
    assert len(names) > 50
    assert sorted(n for n in names if not hasattr(gc, n)) == []
