"""One sender per configured destination, by its ``type``."""

from __future__ import annotations

from functools import partial

from core.config import Destination, Settings
from core.identifiers import Clock
from pacs_bridge.commitment import request_commitment
from pacs_bridge.dicom_store import CStoreSender
from pacs_bridge.fhir import FhirSender
from pacs_bridge.folder import FolderSender
from pacs_bridge.mllp import MllpSender
from pacs_bridge.outcome import Sender
from pacs_bridge.stow import StowSender
from pacs_bridge.webhook import WebhookSender


def build_sender(name: str, dest: Destination, settings: Settings, clock: Clock) -> Sender:
    """The sender for destination ``name``."""
    if dest.type == "dicom":
        if dest.storage_commitment:
            # the PACS sends its report to the AE that asked: the commitment listener's
            return CStoreSender(
                dest,
                calling_ae_title=settings.bridge.commitment_ae_title,
                commit=partial(request_commitment, uid_root=settings.uid_root),
            )
        return CStoreSender(dest, calling_ae_title=settings.scp.ae_title)
    if dest.type == "stow":
        return StowSender(dest)
    if dest.type == "fhir":
        return FhirSender(dest)
    if dest.type == "mllp":
        return MllpSender(dest)
    if dest.type == "folder":
        assert dest.path is not None
        return FolderSender(dest.path, fsync=settings.storage.fsync)
    assert dest.type == "webhook"
    return WebhookSender(dest, base_url=settings.service.base_url)
