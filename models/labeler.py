"""Report labeler: free-text chest radiograph findings -> coded findings with negation and uncertainty.

Works without weights.  spaCy 3.8 + negspacy on a blank English pipeline
(:mod:`models.labeler_nlp`; medspacy pins a spaCy that breaks with numpy 2),
with ConText-style rules of our own for uncertainty and "normal" statements:

1. spaCy's sentencizer splits the report into sentences (a line break also
   ends one; "1.5" is one token);
2. a finding ruler marks mentions with a term table per label of the shared
   vocabulary (:mod:`models.vocabulary`: the 14 ChestX-ray14 labels and the
   CheXpert ones);
3. negspacy's NegEx (``en_clinical`` termset, adjusted for radiology) decides
   negation; our uncertainty triggers - *pre* (scope runs forward) or *post*
   (scope runs backward), cut at termination terms ("but", "however",
   "which"...) - decide hedging ("cannot be excluded" is uncertain, not negated);
4. "normal" statements ("heart size is normal", "costophrenic angles are
   sharp", "lungs are clear") assert absence of the labels they rule out;
5. per label, present beats uncertain beats absent (as the CheXpert labeler
   aggregates mentions).

Two readings share these rules: NegBio's ChestX-ray14 labels (the default) and
CheXpert's (``chexpert=True``, ``mmdx label --labels chexpert``), whose labels
are defined more broadly (:data:`CHEXPERT_TERMS`: congestion is edema, scarring
opacity, pleural thickening "Pleural Other") and whose "No Finding" means nothing
abnormal at all (:data:`OTHER_FINDINGS`); :func:`chexpert_values` writes the
CheXpert row (1 / 0 / -1 / blank).

Each result keeps the character span it came from, so a reader can check it.
Rule order matters and is documented at each table.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

from core.records import Finding, Presence, Producer, ProducerKind
from models import labeler_nlp
from models.labeler_nlp import NEGEX_TRIGGER, OTHER_FINDING
from models.vocabulary import BY_KEY, CHESTXRAY14, CHEXPERT

# --------------------------------------------------------------------------- term tables

#: Mentions per label (regex over lower-cased text, word-bounded).  Order is irrelevant.
TERMS: dict[str, tuple[str, ...]] = {
    "atelectasis": (
        r"atelecta\w*",
        r"(?:lobar|lobe|lung|segmental) collapse",
        r"collapsed? (?:left |right )?(?:lung|lobe)",
    ),
    "cardiomegaly": (
        r"cardiomegaly",
        r"cardiac (?:enlargement|silhouette (?:is |appears )?(?:\w+ )?enlarged)",
        r"enlarge(?:d|ment of the) (?:cardiac silhouette|heart|cardiac shadow)",
        r"heart (?:size )?(?:is |appears |remains )?"
        r"(?:mildly |moderately |markedly |severely |slightly )?(?:enlarged|increased)",
        r"(?:heart|cardiac) size (?:is )?(?:\w+ )?(?:borderline |mildly |moderately |markedly )?"
        r"(?:large|enlarged|increased)",
        r"(?:large|enlarged) heart",
        r"heart (?:is |appears )?(?:borderline |mildly |moderately |markedly )?large",
        r"borderline (?:heart size|cardiac size|enlarged heart|cardiac enlargement)",
        r"heart (?:size )?is borderline(?: in size| enlarged)?",
    ),
    "effusion": (
        r"(?<!pericardial )effusions?",
        r"pleural fluid",
        r"hydrothorax",
        r"hydropneumothorax",
        # not "blunting of the costophrenic angle": a sign that scarring or hyperinflation gives too, and NegBio
        # does not read it as an effusion
    ),
    "infiltration": (r"infiltrat\w*",),
    "mass": (r"mass(?:es)?(?!\w)(?! effect)",),
    # a "nodular" opacity or density is a shape, not a nodule (NegBio reads only the noun)
    "nodule": (r"nodules?",),
    "pneumonia": (r"pneumonia", r"pneumonic", r"bronchopneumonia", r"pneumonitis"),
    "pneumothorax": (r"pneumothora(?:x|ces)", r"hydropneumothorax", r"ptx", r"pleural air(?: collections?)?"),
    "consolidation": (r"consolidat\w*",),
    "edema": (r"o?edema(?:tous)?",),  # not "vascular congestion": NegBio and radiologists keep them apart
    "emphysema": (r"emphysema\w*",),
    "fibrosis": (r"fibros\w*", r"fibrotic", r"pulmonary scarring"),
    "pleural_thickening": (
        r"pleural (?:\w+ )?thickening",
        r"thickening of the (?:\w+ )?pleura",
        r"pleural(?:-| )parenchymal scarring",
        r"apical (?:pleural )?(?:cap|capping|thickening)",
        r"pleural scarring",
        # a fissure is pleura: NegBio reads fissural thickening as pleural thickening
        r"fissural (?:\w+ )?thickening",
        r"thickening of the (?:\w+ )?(?:minor |major |horizontal )?fissures?",
    ),
    "hernia": (r"hernia\w*",),
    "fracture": (r"fractures?", r"fractured"),
    "lung_opacity": (
        r"opacit(?:y|ies)",
        r"airspace (?:disease|process)",
        r"densit(?:y|ies)",
        r"haziness",
        r"infiltrates?",
    ),
    # not a bare "lesion": a sclerotic or bone lesion is not a lung lesion
    "lung_lesion": (
        r"(?:lung|pulmonary|parenchymal|cavitary|spiculated|pleural-based|hilar) lesions?",
        r"mass(?:es)?(?!\w)(?! effect)",
        r"nodul(?:e|es)",
    ),
    "enlarged_cardiomediastinum": (
        r"(?:widen(?:ed|ing)|enlarged) (?:cardio)?mediastin\w*",
        r"(?:cardio)?mediastin\w* (?:silhouette |contours? )?(?:is |are )?(?:widened|enlarged)",
    ),
    "pleural_other": (r"pleural (?:plaques?|calcifications?)", r"fibrothorax"),
    "support_devices": (
        r"(?:endotracheal|et|nasogastric|ng|chest|feeding) tubes?",
        r"picc",
        r"catheters?",
        r"pacemaker",
        r"(?:central|venous) line",
        r"sternotomy wires?",
        r"pacing (?:wires?|leads?)",
        r"defibrillator",
        r"port-?a-?cath",
        r"\bport\b",
    ),
}

#: Mentions CheXpert's definitions add to a label (Irvin et al. 2019, the CheXpert labeler's phrase lists): read only
#: with ``chexpert=True`` (``mmdx label --labels chexpert``), as NegBio's ChestX-ray14 labels keep them apart
#: (vascular congestion is not ChestX-ray14 Edema, pleural thickening has its own ChestX-ray14 label).
CHEXPERT_TERMS: dict[str, tuple[str, ...]] = {
    "edema": (
        r"(?:pulmonary |interstitial )?(?:vascular |venous )?congesti(?:on|ve)(?! heart)",
        r"(?:congestive )?heart failure",
        r"chf",
        r"vascular (?:prominence|engorgement)",
        r"(?:perihilar |vascular )?indistinctness",
        r"indistinct (?:\w+ )?(?:vascular|vessels?|margination|vasculature)\w*",
        r"(?:pulmonary |vascular |venous )?engorge(?:d|ment)",
        r"increased (?:\w+ )?(?:vascularity|vascular markings)",
        r"(?:pulmonary )?venous hypertension",
        r"(?:vascularity|vasculature) (?:is |are )?(?:increased|engorged|prominent)",
        r"(?:prominence of the|prominent) (?:central )?(?:pulmonary )?(?:vasculature|vessels|vascularity)",
        r"cephalization",
    ),
    # not "granulomatous infection": a healed one, which the report names as the cause of granulomas
    "pneumonia": (r"(?<!granulomatous )(?<!granulomatous chest )infections?", r"infectious process"),
    "lung_opacity": (
        r"(?:interstitial|reticular|reticulonodular|coarse(?:ned)?) (?:lung )?(?:markings?|patterns?|opacities)",
        r"(?:parenchymal |pulmonary |lung |linear |streaky |subsegmental )?scar(?:s|ring)?",
        r"reticula(?:r|tion)",
        r"peribronchial (?:cuffing|thickening)",
        r"bronchial wall thickening",
        r"air-? ?space (?:disease|process)",
        r"infiltration",
    ),
    "lung_lesion": (
        r"nodular (?:densit(?:y|ies)|opacit(?:y|ies)|opacification)",
        r"tumou?rs?",
        r"neoplasms?",
        r"(?:carcinoma|malignancy|metasta\w*)",
        r"cavitary lesions?",
        r"mass-?like",
    ),
    "pleural_other": (
        r"pleural (?:\w+ )?thickening",
        r"thickening of the (?:\w+ )?pleura",
        r"apical (?:pleural )?(?:cap|capping|thickening)",
        r"pleural(?:-| |o-?)(?:\w+ )?scar(?:s|ring)?",
        r"pleuroparenchymal scar(?:s|ring)?",
        # "apical scarring" alone is lung scarring (CheXpert: Lung Opacity); a cap or thickening is pleural
        r"(?:bi)?apical (?:\w+ )?(?:thickening|caps?|capping)",
        r"fissural (?:\w+ )?thickening",
        r"pleural (?:plaques?|calcifications?)",
        r"(?<!cystic )fibros\w*",  # not cystic fibrosis: an airway disease
        r"fibrotic",
    ),
    "enlarged_cardiomediastinum": (
        r"(?:prominent|widened|enlarged|wide) (?:superior )?(?:cardio)?mediastin\w*",
        # "(?!not )": "mediastinal contours are not enlarged" is a normal statement, not a mention
        r"(?:cardio)?mediastin(?:um|al (?:silhouette|contours?|width)) (?:is |are |appears? )?"
        r"(?!not )(?:\w+ )?(?:widened|enlarged|prominent|wide)",
        r"(?:prominence|widening|enlargement|fullness|convexity) of (?:the )?(?:\w+ )?mediastin\w*",
        r"mediastinal (?:widening|prominence|enlargement|fullness)",
        r"paratracheal (?:\w+ )?(?:prominence|fullness|widening)",
    ),
    "support_devices": (
        r"(?:endotracheal|tracheostomy|et|nasogastric|ng|og|orogastric|chest|feeding|dobhoff|enteric) tubes?",
        r"(?:central venous |venous |central |internal jugular |subclavian |ij |picc )(?:line|catheter)s?",
        r"pacers?",
        r"(?:pacemaker|pacing|defibrillator|aicd|icd) (?:generator|leads?|wires?|device)",
        r"aicd",
        r"(?:cardiac )?(?:pacemaker|defibrillator)s?",
        r"(?:prosthetic|mechanical|replaced) (?:\w+ )?valves?",
        r"valve (?:replacement|prosthesis)",
        r"(?:orthopedic |spinal |fixation )?hardware",
        r"(?:surgical )?(?:plates?|screws?)",
        r"(?:port|mediport|port-a-cath|portacath)",
        r"(?:drains?|drainage catheters?)",
        r"(?:cannula|stimulator|pump|loop recorder|monitoring device)s?",
        r"devices?",
        r"swan-?ganz",
        # de-identified reports often lose the device's name ("XXXX tip projects over the SVC"): its parts remain
        r"icds?",
        r"(?:cardiac |pacer |pacemaker |battery |pulse )?generators?",
        r"(?:cardiac|pacer|pacing|transvenous|epicardial|atrial|ventricular|monitor|ekg|ecg) leads?",
        r"shunt(?: tubing)?",
        r"tubing",
        r"(?:bone )?anchors?",
        r"prosthe(?:sis|ses|tic)",
        r"arthroplast\w*",
        r"tip (?:projects?|overl\w*|terminat\w*|is|at|in|remains|positioned|extends)",
    ),
}
#: Abnormalities outside the label set: present or uncertain, they make a report "not No Finding" (CheXpert's
#: "No Finding" means no finding at all, not none of its labels; its labeler lists such terms too).
OTHER_FINDINGS: tuple[str, ...] = (
    r"emphysema\w*",
    r"hyperinfla\w*",
    r"hyperexpan\w*",
    r"hyperaerat\w*",
    r"(?:over|hyper)-?distension",
    r"copd",
    r"chronic obstructive",
    r"bullae",
    r"bullous",
    r"blebs?",
    r"hernia\w*",
    r"granulom\w*",
    r"calcifi\w*",
    r"calcium",
    r"atheroscl\w*",
    r"tortu\w*",
    r"ectatic",
    r"aneurysm\w*",
    r"(?:dextro|levo|thoraco|rotato)?-?scolio\w*",
    r"kypho\w*",
    r"degenerat\w*",
    r"spondylo\w*",
    r"osteophyt\w*",
    r"osteopeni\w*",
    r"osteoporo\w*",
    r"deformit\w*",
    r"(?:wedge|compression) deformit\w*",
    r"eventration",
    r"elevat(?:ed|ion)(?: of the)? (?:\w+ )?(?:hemi)?diaphragm\w*",
    r"(?:hemi)?diaphragm\w* (?:is |are )?elevated",
    r"blunt\w*",
    r"thicken\w*",
    r"scar\w*",
    r"fibros\w*",
    r"bronchiectas\w*",
    r"bronchitis",
    r"bronchiolitis",
    r"airways? disease",
    r"cuffing",
    r"aspiration",
    r"(?:pulmonary )?(?:arterial )?hypertension",
    r"metasta\w*",
    r"pneumomediastinum",
    r"pneumoperitoneum",
    r"subcutaneous emphysema",
    r"volume loss",
    r"(?:low|decreased|diminished|reduced) lung volumes?",
    r"hypoinflat\w*",
    r"(?:prominent|enlarged|fullness of the) (?:\w+ )?(?:hila|hilum|hilar|pulmonary arter\w*)",
    r"interstitial (?:markings?|prominence|disease|lung disease)",
    r"(?:increased|prominent|coarse(?:ned)?) (?:\w+ )?(?:markings?|interstitium)",
    r"hematoma",
    r"hemorrhage",
    r"contusion",
    r"lucenc(?:y|ies)",
    r"cavit\w*",
    r"cysts?",
    r"cystic",
    r"lymphadenopathy",
    r"adenopathy",
    r"sarcoid\w*",
    r"tuberculosis",
    # not sternotomy wires, clips, stents or sutures: devices, which CheXpert's "No Finding" ignores
    r"\w+ectomy",
    r"resection",
    r"foreign bod(?:y|ies)",
    r"prominen(?:t|ce)",
    r"unfold\w*",
    r"curvature",
    r"arthriti\w*",
    r"arthropath\w*",
    r"crowding",
    r"lung volumes? (?:is |are )?(?:\w+ )?(?:low|decreased|diminished|reduced)",
    r"bullet",
    r"shrapnel",
)

#: Pre-uncertainty triggers.
PRE_UNC = (
    r"may",
    r"might",
    r"possible",
    r"possibly",
    r"probable",
    r"probably",
    r"likely",
    r"questionable",
    r"question(?: of)?",
    r"suspicious (?:for|of)",
    r"suspect(?:ed)?",
    r"suggest(?:s|ed|ing|ive of)?",
    r"concern(?:ing)? for",
    r"could",
    r"can represent",
    r"consider(?:ed)?",
    r"differential",
    r"equivocal",
    r"cannot (?:be )?(?:excluded?|ruled out)",
    r"not (?:be )?(?:excluded|ruled out)",
    r"worrisome for",
    r"favou?r(?:s|ing|ed)?",  # "consistent with", "compatible with", "representing" affirm a finding: not hedges
    # "borderline" is not a hedge: "borderline cardiomegaly" reports a (mildly) enlarged heart, as NegBio reads it
    r"atypical",
    r"indeterminate",
    r"potential",
    # a purpose or a hypothetical, not a finding: "CT to identify a small nodule", "to exclude an underlying mass"
    r"to (?:identify|detect|exclude|evaluate|assess|characterize|rule out|look for|ensure)",
    r"detecting",
    r"correlate (?:clinically )?(?:for|with)",
    # a reading conditional on the clinical picture: "in the appropriate clinical setting ... compatible with pneumonia"
    r"in the (?:appropriate |correct |proper |right )?clinical (?:setting|context)",
    r"(?:evaluation|assessment) (?:of|for)",
)
#: Post-uncertainty triggers (right after a mention they beat negation: "cannot be excluded" is not a negation).
POST_UNC = (
    r"(?:can ?not|can't|cannot|not) be (?:excluded|ruled out|entirely excluded)",
    r"(?:is|are) (?:not )?excluded",
    r"(?:is|are) (?:possible|suspected|questioned|likely|not excluded)",
    r"(?:is|are|would be) (?:a )?(?:consideration|concern)",
    r"(?:could|may|might) (?:be|represent)",
    r"(?:suspected|questioned|not excluded)",
)
#: Termination terms: a scope never crosses them.
TERMINATORS = (
    r"but",
    r"however",
    r"although",
    r"though",
    r"except",
    r"aside from",
    r"apart from",
    r"otherwise",
    r"which",
    r"there (?:is|are|has been|have been)",
    r"new",
    r"now",
    r"remain(?:s|ing)?",
    r"persistent",
    r"persists?",
    r"while",
    r"whereas",
    r"yet",
    r"secondary to",
    r"due to",
    r"concerning(?! for)",  # "concerning for X" is a hedge on X, not the end of a scope
    r";",
    r":",
)

#: "The lungs are clear": NegBio reads it as ruling out parenchymal findings; CheXpert marks only what is named
#: (its labeler leaves Consolidation and Lung Opacity blank after "lungs are clear"), so ``chexpert=True`` skips it.
LUNGS_CLEAR = r"lungs? (?:is |are )?(?:otherwise )?(?:clear|well expanded and clear)"

#: "Normal" statements and the labels they rule out (ConText-style definite negatives).
NORMAL_STATEMENTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        r"(?:heart|cardiac) (?:size|silhouette|shadow)s? (?:is |are |appears? |remains? )?(?:\w+ )?"
        r"(?:normal|within normal limits|unremarkable|not enlarged|upper (?:limits? )?(?:of )?normal)",
        ("cardiomegaly",),
    ),
    (r"normal (?:heart|cardiac) (?:size|silhouette)", ("cardiomegaly",)),
    (r"heart is (?:not enlarged|normal in size)", ("cardiomegaly",)),
    (
        r"(?:cardio)?mediastinal (?:silhouette|contours?|shadows?)s? (?:is |are |appears? |remains? )?(?:\w+ )?"
        r"(?:normal|within normal limits|unremarkable|stable|not enlarged|not widened)",
        ("cardiomegaly", "enlarged_cardiomediastinum"),
    ),
    (r"normal (?:cardio)?mediastinal (?:silhouette|contours?)", ("cardiomegaly", "enlarged_cardiomediastinum")),
    (r"(?:costophrenic|cp) (?:angles?|sulci|recesses) (?:is |are )?(?:sharp|clear|preserved|normal)", ("effusion",)),
    (LUNGS_CLEAR, ("consolidation", "pneumonia", "edema", "lung_opacity")),
    (r"no (?:acute )?cardiopulmonary (?:abnormality|disease|process|findings?)", ()),
)

_NORMAL_STATEMENTS = tuple((re.compile(p), labels) for p, labels in NORMAL_STATEMENTS)

#: Body parts that head a section of a multi-exam report ("Chest. ... Right shoulder. Healing scapular fracture."):
#: findings under a heading other than the chest belong to another exam and are not read.
BODY_PARTS = (
    r"chest",
    r"thorax",
    r"lungs?",
    r"ribs?",
    r"hands?",
    r"wrists?",
    r"fingers?",
    r"thumbs?",
    r"forearms?",
    r"elbows?",
    r"humerus",
    r"arms?",
    r"shoulders?",
    r"clavicles?",
    r"scapulae?",
    r"hips?",
    r"pelvis",
    r"femurs?",
    r"knees?",
    r"tibia(?: and fibula)?",
    r"legs?",
    r"ankles?",
    r"feet",
    r"foot",
    r"toes?",
    r"abdomen",
    r"(?:cervical|thoracic|lumbar) spine",
    r"skull",
    r"sinuses",
)
_PART = r"(?:(?:left|right|bilateral|both)\s+)?(?:" + "|".join(BODY_PARTS) + r")"
_HEADING = re.compile(
    r"^\s*(?:\d+\.\s*)?(?:left and right\s+)?" + _PART + r"(?:\s*(?:,|and)\s*" + _PART + r")*\s*[.:]?\s*$"
)
_CHEST_PART = re.compile(r"\b(?:chest|thorax|lungs?|ribs?)\b")


def _alt(patterns: Iterable[str]) -> re.Pattern[str]:
    return re.compile(r"(?<![\w-])(?:" + "|".join(patterns) + r")(?![\w])")


_TERM_RES = {label: _alt(pats) for label, pats in TERMS.items()}
_PRE_UNC, _POST_UNC = _alt(PRE_UNC), _alt(POST_UNC)
_TERM = re.compile(r"(?<![\w-])(?:" + "|".join(t for t in TERMINATORS if t not in (";", ":")) + r")(?!\w)|[;:]")
_SENTENCE = re.compile(r"(?<!\d)\.(?!\d)|[!?\n]|(?<=\s)\d+\.\s")

RULESET_DIGEST = hashlib.sha256(
    json.dumps(
        [
            TERMS,
            CHEXPERT_TERMS,
            OTHER_FINDINGS,
            PRE_UNC,
            POST_UNC,
            TERMINATORS,
            NORMAL_STATEMENTS,
            BODY_PARTS,
            labeler_nlp.RULES,
            labeler_nlp.versions(),
        ],
        sort_keys=True,
    ).encode()
).hexdigest()


def _version() -> str:
    try:
        return version("mmdx")
    except PackageNotFoundError:  # pragma: no cover - source checkout without install
        return "0"


#: Every labeler finding carries this producer: a rule engine with the hash of its tables.
LABELER_PRODUCER = Producer(
    kind=ProducerKind.RULE_ENGINE, name="mmdx-report-labeler", version=_version(), digest=RULESET_DIGEST
)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class Mention:
    """One mention of a label: where it is, what it says, and which trigger decided."""

    label: str
    presence: Presence
    start: int  #: character offsets in the report
    end: int
    text: str  #: the mention as written
    trigger: str | None = None


@dataclass(frozen=True, slots=True)
class LabelResult:
    """The aggregated reading of one label over a report."""

    label: str
    presence: Presence
    mentions: tuple[Mention, ...]

    @property
    def decisive(self) -> Mention:
        """The mention that decided the label: a direct mention before a "normal" statement."""
        same = [m for m in self.mentions if m.presence is self.presence]
        return next((m for m in same if m.trigger != "normal statement"), same[0])

    @property
    def span(self) -> tuple[int, int]:
        return self.decisive.start, self.decisive.end


def _sentences(text: str) -> list[tuple[int, int]]:
    spans, start = [], 0
    for m in _SENTENCE.finditer(text):
        if m.start() > start:
            spans.append((start, m.start()))
        start = m.end() if m.group(0) in ".!?\n" else m.start()
    if start < len(text):
        spans.append((start, len(text)))
    return spans


def _clause_bounds(sentence: str, pos: int) -> tuple[int, int]:
    """Start and end of the clause around ``pos`` (cut at termination terms)."""
    lo, hi = 0, len(sentence)
    for t in _TERM.finditer(sentence):
        if t.end() <= pos:
            lo = max(lo, t.end())
        elif t.start() >= pos:
            hi = min(hi, t.start())
            break
    return lo, hi


def _modifier(sentence: str, start: int, end: int, negated: bool) -> tuple[Presence, str | None]:
    """Presence of a mention at [start, end) of a sentence.

    ``negated`` is negspacy's NegEx verdict on the mention; the uncertainty rules
    (ConText-style, ours: negspacy has none) are applied around it.
    """
    lo, hi = _clause_bounds(sentence, start)
    after = sentence[end:hi]
    before = sentence[lo:start]
    m = _POST_UNC.match(after.lstrip(" ,"))
    if m:  # "pneumothorax cannot be excluded", "effusion is possible"
        return Presence.UNCERTAIN, m.group(0)
    if negated:  # "no pleural line to suggest pneumothorax": a negation governs the hedges after it
        return Presence.ABSENT, NEGEX_TRIGGER
    pre_unc = list(_PRE_UNC.finditer(before))
    if pre_unc:
        return Presence.UNCERTAIN, pre_unc[-1].group(0)
    m = _POST_UNC.search(after)
    if m:
        return Presence.UNCERTAIN, m.group(0)
    # "scarring or atelectasis": an either-or names each finding as present (NegBio's reading: the report does
    # commit to an abnormality; the hedge is about its nature), unless a hedge word governs it
    return Presence.PRESENT, None


def mentions(text: str, labels: Iterable[str] | None = None, *, chexpert: bool = False) -> list[Mention]:
    """Every labelled mention in a report, in text order.

    ``chexpert``: CheXpert's definitions (:data:`CHEXPERT_TERMS` count too).  The label ``other_finding``
    (:data:`OTHER_FINDINGS`) is read only when asked for.
    """
    wanted = tuple(labels) if labels is not None else tuple(TERMS)
    doc = labeler_nlp.parse(text)
    out: list[Mention] = []
    other_part: set[int] = set()  # sentences under another body part's heading
    in_other = False
    for sent in doc.sents:
        heading = _HEADING.match(sent.text.lower())
        if heading:
            in_other = not _CHEST_PART.search(heading.group(0))
        if in_other:
            other_part.add(sent.start_char)
            continue
        s0 = sent.start_char
        sentence = sent.text.lower()
        for pattern, ruled_out in _NORMAL_STATEMENTS:
            if chexpert and pattern.pattern == LUNGS_CLEAR:
                continue
            for m in pattern.finditer(sentence):
                for label in ruled_out:
                    if label in wanted:
                        out.append(
                            Mention(
                                label,
                                Presence.ABSENT,
                                s0 + m.start(),
                                s0 + m.end(),
                                text[s0 + m.start() : s0 + m.end()],
                                "normal statement",
                            )
                        )
    for span in doc.spans[labeler_nlp.SPAN_KEY]:
        label = span.label_
        if label.startswith(labeler_nlp.CHEXPERT_PREFIX):
            if not chexpert:
                continue
            label = label.removeprefix(labeler_nlp.CHEXPERT_PREFIX)
        if label not in wanted:
            continue
        sent = span.sent
        s0 = sent.start_char
        if s0 in other_part:
            continue
        presence, trigger = _modifier(
            sent.text.lower(), span.start_char - s0, span.end_char - s0, labeler_nlp.negated(span)
        )
        out.append(Mention(label, presence, span.start_char, span.end_char, span.text, trigger))
    return sorted(out, key=lambda x: (x.start, x.label))


_RANK = {Presence.PRESENT: 2, Presence.UNCERTAIN: 1, Presence.ABSENT: 0}


def label_report(text: str, labels: Iterable[str] | None = None, *, chexpert: bool = False) -> dict[str, LabelResult]:
    """Label -> aggregated result for each label the report mentions (present > uncertain > absent).

    ``chexpert``: CheXpert's label definitions (see :func:`mentions`).
    """
    by_label: dict[str, list[Mention]] = {}
    for m in mentions(text, labels, chexpert=chexpert):
        by_label.setdefault(m.label, []).append(m)
    return {
        label: LabelResult(label, max((m.presence for m in ms), key=_RANK.__getitem__), tuple(ms))
        for label, ms in by_label.items()
    }


def no_finding(results: dict[str, LabelResult], text: str | None = None) -> bool:
    """CheXpert's "No Finding": nothing abnormal present or uncertain (support devices do not count).

    With the report ``text``, abnormalities outside the label set count too (:data:`OTHER_FINDINGS`: an
    emphysema or a scoliosis is a finding although no CheXpert label names it).
    """
    if any(r.presence is not Presence.ABSENT for k, r in results.items() if k != "support_devices"):
        return False
    return text is None or not any(m.presence is not Presence.ABSENT for m in mentions(text, (OTHER_FINDING,)))


#: CheXpert's values for the labeler's presences (a label the report does not mention is blank: ``None``).
CHEXPERT_CODE = {Presence.PRESENT: 1, Presence.ABSENT: 0, Presence.UNCERTAIN: -1}


def chexpert_values(text: str) -> dict[str, int | None]:
    """The report as the CheXpert labeler writes it: column name -> 1 / 0 / -1 / None (blank).

    "No Finding" is 1 when no pathology is present or uncertain (support devices do not count), blank otherwise
    (CheXpert never writes 0 there).
    """
    res = label_report(text, CHEXPERT, chexpert=True)
    out: dict[str, int | None] = {}
    for key in CHEXPERT:
        name = BY_KEY[key].chexpert
        assert name is not None
        out[name] = CHEXPERT_CODE[res[key].presence] if key in res else None
    out["No Finding"] = 1 if no_finding(res, text) else None
    return out


def to_findings(results: dict[str, LabelResult], producer: Producer = LABELER_PRODUCER) -> tuple[Finding, ...]:
    """Coded findings of the labelled report (one per label), with the span text as the finding text."""
    out = []
    for key, r in sorted(results.items()):
        vocab = BY_KEY[key]
        s, e = r.span
        decisive = r.decisive
        out.append(
            Finding(
                concept=vocab.code,
                text=decisive.text,
                producer=producer,
                presence=r.presence,
                site=vocab.site,
                criteria=(f"span {s}-{e}", f"trigger {decisive.trigger or 'none'}"),
                critical=vocab.critical and r.presence is Presence.PRESENT,
            )
        )
    return tuple(out)


def label_sets() -> dict[str, tuple[str, ...]]:
    """The label sets the labeler covers, by name (``chexpert`` reads with CheXpert's definitions)."""
    return {"chestxray14": CHESTXRAY14, "chexpert": CHEXPERT, "all": tuple(TERMS)}


def as_json(
    report_id: str, text: str, labels: Iterable[str] | None = None, *, chexpert: bool = False
) -> dict[str, object]:
    """The ``mmdx label --json`` record of one report (``chexpert``: CheXpert's definitions and its value row)."""
    res = label_report(text, labels, chexpert=chexpert)
    extra: dict[str, object] = {"chexpert": chexpert_values(text)} if chexpert else {}
    return {
        "report": report_id,
        "no_finding": no_finding(res, text),
        **extra,
        "labels": {
            k: {
                "presence": r.presence.value,
                "code": {
                    "system": BY_KEY[k].code.system,
                    "code": BY_KEY[k].code.value,
                    "display": BY_KEY[k].code.meaning,
                },
                "span": list(r.span),
                "text": r.decisive.text,
                "trigger": r.decisive.trigger,
            }
            for k, r in sorted(res.items())
        },
    }
