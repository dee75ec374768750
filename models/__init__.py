"""Model backends, registry, routing, the report labeler and the safety checks.

The only package that imports torch / MONAI / transformers, and only when a
backend is first used: importing ``models`` (and its public face below) is
cheap, so ``mmdx label`` and ``mmdx models`` start fast.

Public face (what ``app`` calls):

* :class:`models.registry.Registry` - ``Registry.from_settings(settings)``;
  ``describe_all()`` for ``mmdx models``;
* :func:`models.orchestrate.analyse_batch` - the models stage of the pipeline;
* :class:`models.protocol.ModelInput` / :class:`models.protocol.ClinicalContext` - its input;
* :func:`models.labeler.label_report` / :func:`models.labeler.to_findings` - the report labeler;
* :func:`models.safety.ensure_preliminary`, :func:`models.safety.no_model_notice`.
"""

from models.orchestrate import ModelsResult, analyse, analyse_batch
from models.protocol import ClinicalContext, ModelBackend, ModelInfo, ModelInput, ModelOutput
from models.registry import Registry

__all__ = [
    "ClinicalContext",
    "ModelBackend",
    "ModelInfo",
    "ModelInput",
    "ModelOutput",
    "ModelsResult",
    "Registry",
    "analyse",
    "analyse_batch",
]
