"""Report labeler, CheXpert definitions: one sentence per rule, the four-value row, and ``mmdx label --labels``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from app.commands.models import register
from core.records import Presence
from models.labeler import chexpert_values, label_report, no_finding

P, A, U = Presence.PRESENT, Presence.ABSENT, Presence.UNCERTAIN

#: (sentence, label, presence with CheXpert's definitions, presence with NegBio's ChestX-ray14 ones or None)
RULES = [
    # CheXpert counts congestion and heart failure as edema; NegBio's ChestX-ray14 Edema does not
    ("Mild pulmonary vascular congestion.", "edema", P, None),
    ("Findings compatible with congestive heart failure.", "edema", P, None),
    # scarring and interstitial markings are CheXpert lung opacity
    ("Linear scarring in the left base.", "lung_opacity", P, None),
    ("Coarse interstitial markings are noted.", "lung_opacity", P, None),
    # pleural thickening and fibrosis are CheXpert pleural other
    ("Bilateral apical pleural thickening.", "pleural_other", P, None),
    # a nodular density is a lung lesion; a sclerotic bone lesion is not
    ("Nodular density in the right upper lobe.", "lung_lesion", P, None),
    ("Sclerotic lesion in a thoracic vertebral body.", "lung_lesion", None, None),
    ("A large masslike opacity in the right lung base.", "lung_lesion", P, None),
    # infection is pneumonia, a healed granulomatous infection is not
    ("Right lower lobe opacity, consistent with infection.", "pneumonia", P, None),
    ("Calcified granulomas from prior granulomatous infection.", "pneumonia", None, None),
    # a device whose name the de-identification removed still leaves its parts
    ("XXXX tip projects over the cavoatrial junction.", "support_devices", P, None),
    ("Left chest wall generator with leads in the right ventricle.", "support_devices", P, None),
    # engorged or indistinct vessels are CheXpert edema; a normal statement about them is not
    ("The pulmonary vessels are engorged.", "edema", P, None),
    ("Indistinct vascular margination.", "edema", P, None),
    ("Pulmonary vascular engorgement appears within limits of normal.", "edema", A, None),
    # pleural scarring of any kind, apical caps; cystic fibrosis is not pleural
    ("Mild biapical pleural-peripheral scarring.", "pleural_other", P, None),
    ("Changes of cystic fibrosis.", "pleural_other", None, None),
    ("Biapical scarring.", "pleural_other", None, None),
    ("Biapical scarring.", "lung_opacity", P, None),
    ("Bilateral apical capping.", "pleural_other", P, None),
    # a reading conditional on the clinical picture is a hedge
    ("In the appropriate clinical setting this appearance is compatible with pneumonia.", "pneumonia", U, U),
    # "would be a consideration" hedges what comes before it
    ("A pneumonia in the right base would be a consideration.", "pneumonia", U, U),
    # mediastinal widening; "not enlarged" is a normal statement
    ("The heart silhouette and mediastinal contours are not enlarged.", "enlarged_cardiomediastinum", A, A),
    ("Mild prominence of the mediastinum.", "enlarged_cardiomediastinum", P, None),
    ("Prominence of superior mediastinal structures.", "enlarged_cardiomediastinum", P, None),
    ("The mediastinum is widened.", "enlarged_cardiomediastinum", P, P),
    ("Prominent superior mediastinum.", "enlarged_cardiomediastinum", P, None),
]


@pytest.mark.parametrize(("text", "label", "chexpert", "negbio"), RULES)
def test_chexpert_definitions(text: str, label: str, chexpert: Presence | None, negbio: Presence | None) -> None:
    got = label_report(text, chexpert=True).get(label)
    assert (got.presence if got else None) is chexpert
    got = label_report(text).get(label)
    assert (got.presence if got else None) is negbio


@pytest.mark.parametrize(
    "text",
    [
        "Further evaluation with CT can be performed to identify a small nodule.",
        "CT scan is more sensitive in detecting small nodules.",
        "Followup in 6 weeks to ensure resolution and exclude an underlying mass.",
        "Correlate clinically for a nodule.",
    ],
)
def test_a_purpose_clause_is_no_finding(text: str) -> None:
    res = label_report(text, ["nodule", "mass"])
    assert all(r.presence is not P for r in res.values())


@pytest.mark.parametrize("chexpert", [True, False])
def test_findings_under_another_body_part_are_not_read(chexpert: bool) -> None:
    text = "1. Chest. Small right effusion. 2. Right shoulder. Healing scapular fracture."
    res = label_report(text, chexpert=chexpert)
    assert res["effusion"].presence is P and "fracture" not in res
    text = "Shoulder and clavicle. Old clavicle fracture. Chest. Healing left rib fracture."
    assert label_report(text, chexpert=chexpert)["fracture"].presence is P  # the chest section's own


def test_not_well_seen_is_a_negation() -> None:
    assert label_report("The nodular density is not well seen today.", chexpert=True)["lung_lesion"].presence is A


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Heart size normal. Lungs are clear. No pneumothorax.", True),
        # a finding outside the CheXpert labels is still a finding: not "No Finding"
        ("Heart size normal. Lungs are clear. Thoracic dextroscoliosis.", False),
        ("Heart size normal. Lungs are clear. Calcified granuloma in the right base.", False),
        ("Lungs are hyperinflated, otherwise clear.", False),
        # a support device is not a finding; a negated other finding is none
        ("Heart size normal. Right PICC line in the SVC. No scoliosis.", True),
    ],
)
def test_no_finding_means_nothing_abnormal(text: str, expected: bool) -> None:
    assert no_finding(label_report(text, chexpert=True), text) is expected
    assert (chexpert_values(text)["No Finding"] == 1) is expected


def test_lungs_are_clear_names_nothing_for_chexpert() -> None:
    # CheXpert marks what a report names: "lungs are clear" leaves Consolidation and Lung Opacity blank
    row = chexpert_values("Heart size normal and lungs are clear. No edema or pneumonia.")
    assert row["Consolidation"] is None and row["Lung Opacity"] is None
    assert row["Edema"] == row["Pneumonia"] == row["Cardiomegaly"] == 0 and row["No Finding"] == 1
    assert label_report("The lungs are clear.")["consolidation"].presence is A  # NegBio's reading keeps it


def test_chexpert_row_has_all_four_values() -> None:
    row = chexpert_values(
        "Minimal patchy airspace disease within the lingula, may reflect atelectasis or consolidation. "
        "Heart size normal. No pneumothorax."
    )
    assert row["Lung Opacity"] == 1
    assert row["Atelectasis"] == row["Consolidation"] == -1
    assert row["Cardiomegaly"] == row["Pneumothorax"] == 0
    assert row["Fracture"] is None and row["No Finding"] is None
    assert len(row) == 14


def test_cli_label_chexpert(tmp_path: Path) -> None:
    report = tmp_path / "r.txt"
    report.write_text("Heart size normal. Mild vascular congestion. Right PICC line tip in the SVC.")
    runner, app = CliRunner(), typer.Typer()
    register(app)
    out = runner.invoke(app, ["label", str(report), "--labels", "chexpert", "--json"])
    assert out.exit_code == 0, out.output
    rec = json.loads(out.stdout.strip().splitlines()[-1])
    assert rec["chexpert"]["Edema"] == 1 and rec["chexpert"]["Support Devices"] == 1
    assert rec["labels"]["edema"]["text"] == "vascular congestion"
    out = runner.invoke(app, ["label", str(report), "--labels", "chestxray14", "--json"])
    assert out.exit_code == 0, out.output
    rec = json.loads(out.stdout.strip().splitlines()[-1])
    assert "chexpert" not in rec and "edema" not in rec["labels"]
    out = runner.invoke(app, ["label", str(report), "--labels", "chexpert"])
    assert out.exit_code == 0 and "vascular congestion" in out.stdout and "findings reported" in out.stdout
    report.write_text("Heart size normal. Lungs are clear. Stable thoracic levoscoliosis.")
    out = runner.invoke(app, ["label", str(report), "--labels", "chexpert", "--json"])
    assert json.loads(out.stdout.strip().splitlines()[-1])["no_finding"] is False
    table = tmp_path / "reports.csv"  # the column `mmdx batch` reads report texts from
    table.write_text('id,report_text\nr1,"Stable mild cardiomegaly. Clear lungs."\n', encoding="utf-8")
    out = runner.invoke(app, ["label", str(table), "--labels", "chexpert", "--json"])
    recs = [json.loads(line) for line in out.stdout.strip().splitlines()]
    assert len(recs) == 1 and recs[0]["chexpert"]["Cardiomegaly"] == 1
    out = runner.invoke(app, ["label", str(report), "--labels", "nih"])
    assert out.exit_code == 2
