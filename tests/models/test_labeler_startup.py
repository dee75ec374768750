"""The labeler starts without torch (spaCy's optional torch support is not loaded), and torch still works after."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import sys
from models.labeler import label_report
label_report("No pneumothorax. Small left effusion.")
print("torch loaded by the labeler:", "torch" in sys.modules)
import torch
print("torch after:", float(torch.ones(3).sum()))
"""


def test_labelling_a_sentence_does_not_import_torch_and_leaves_it_importable() -> None:
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True, timeout=300).stdout
    assert "torch loaded by the labeler: False" in out
    assert "torch after: 3.0" in out
