"""The report labeler's spaCy pipeline: sentences, finding spans, NegEx negation (negspacy).

``spacy.blank("en")`` (no model download) with, in order:

1. ``sentencizer`` - sentence boundaries at . ! ? and ".." (a decimal such as "1.5" is one token);
2. ``mmdx_line_breaks`` - a line break also starts a sentence (report sections, numbered lists);
3. ``mmdx_findings`` - the finding ruler: every match of the labeler's term table
   (:data:`models.labeler.TERMS`) becomes a span labelled with its finding key in
   ``doc.spans["findings"]`` (spans, not ``doc.ents``: "hydropneumothorax" is both an
   effusion and a pneumothorax, so mentions may overlap);
4. ``negex`` - negspacy's NegEx over those spans with its ``en_clinical`` termset,
   adjusted for radiology reports (:func:`termset`): the hedges that ``en_clinical``
   counts as negations ("versus", "cannot", "evaluate for") are left to the labeler's
   uncertainty rules, and the radiology negations and scope terminators of the labeler
   are added.

The pipeline is built once per process (:func:`nlp`); spaCy is imported only here.
"""

from __future__ import annotations

import re
import sys
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from spacy.language import Language
    from spacy.tokens import Doc

SPAN_KEY = "findings"
#: Span label prefix of the mentions only CheXpert's definitions count (``models.labeler.CHEXPERT_TERMS``).
CHEXPERT_PREFIX = "chexpert:"
#: Span label of an abnormality outside the label sets (``models.labeler.OTHER_FINDINGS``).
OTHER_FINDING = "other_finding"
NEG_ATTR = "negex"
#: The trigger recorded on a mention negspacy negated.
NEGEX_TRIGGER = "negex"

#: ``en_clinical`` triggers that are hedges, not negations, in a radiology report.
NOT_NEGATIONS = frozenset({"versus", "cannot", "can't", "cant", "evaluate for", "r/o", "ro"})
#: Radiology negations ``en_clinical`` lacks (NegEx/ConText radiology additions).
EXTRA_PRECEDING = (
    "resolution of",
    "resolved",
    "clear of",
    "removal of",
    "no evidence for",
    "nor",
    "no new",
    "no focal",
)
EXTRA_FOLLOWING = (
    "is not seen",
    "are not seen",
    "not seen",
    "not identified",
    "not visualized",
    "not well seen",
    "not well-seen",
    "not well visualized",
    "not clearly seen",
    "not present",
    "not evident",
    "not appreciated",
    "not demonstrated",
    "not noted",
    "no longer seen",
    "no longer present",
    "no longer visualized",
    "has resolved",
    "have resolved",
    "is resolved",
    "are resolved",
    "resolved",
    "has cleared",
    "have cleared",
    "cleared",
    "is absent",
    "are absent",
    "absent",
    "removed",
    "within normal limits",
    "within limits of normal",
    "within the limits of normal",
    "appear within limits of normal",
    "is gone",
    "are gone",
)
#: Pseudo-negations: "not excluded" and friends are uncertainty, handled by the labeler.
EXTRA_PSEUDO = (
    "cannot be excluded",
    "can not be excluded",
    "not be excluded",
    "not excluded",
    "cannot be ruled out",
    "not be ruled out",
    "cannot exclude",
    "not entirely excluded",
    "no change in",
    "not changed",
)
EXTRA_TERMINATION = (
    "otherwise",
    "while",
    "whereas",
    "due to",
    "concerning",
    "there is",
    "there are",
    "new",
    "now",
    "remains",
    "remaining",
    "persistent",
    "persists",
    ";",
    ":",
)


#: The adjustments, for the labeler's ruleset digest.
RULES = {
    "not_negations": sorted(NOT_NEGATIONS),
    "preceding": EXTRA_PRECEDING,
    "following": EXTRA_FOLLOWING,
    "pseudo": EXTRA_PSEUDO,
    "termination": EXTRA_TERMINATION,
}


def versions() -> dict[str, str]:
    """spaCy and negspacy versions (part of the ruleset digest: the en_clinical termset ships with negspacy)."""
    out = {}
    for dist in ("spacy", "negspacy"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:  # pragma: no cover - dependency missing: nlp() will say so
            out[dist] = "missing"
    return out


def termset() -> dict[str, list[str]]:
    """negspacy's ``en_clinical`` termset with the radiology adjustments above."""
    from negspacy.termsets import termset as negspacy_termset

    pats: dict[str, list[str]] = negspacy_termset("en_clinical").get_patterns()  # type: ignore[no-untyped-call]
    return {
        "pseudo_negations": [*pats["pseudo_negations"], *EXTRA_PSEUDO],
        "preceding_negations": [p for p in pats["preceding_negations"] if p not in NOT_NEGATIONS]
        + list(EXTRA_PRECEDING),
        "following_negations": [*pats["following_negations"], *EXTRA_FOLLOWING],
        "termination": [*pats["termination"], *EXTRA_TERMINATION],
    }


def _import_spacy_without_torch() -> None:
    """Import spaCy without its optional torch support (thinc imports torch when it can: ~2 s, unused here).

    Only when torch is not loaded yet: torch is hidden for the duration of spaCy's import and usable
    afterwards by anything that imports it (thinc then only lacks its torch layers, which no rule uses).
    """
    if "torch" in sys.modules:
        return
    sys.modules["torch"] = None  # type: ignore[assignment]  # an import of torch raises ImportError meanwhile
    try:
        import spacy  # noqa: F401
    finally:
        if sys.modules.get("torch", 0) is None:
            del sys.modules["torch"]


@lru_cache(maxsize=1)
def nlp() -> Language:
    """The labeler pipeline, built on first use and shared afterwards."""
    _import_spacy_without_torch()
    import spacy
    from negspacy.negation import Negex  # noqa: F401 - registers the "negex" factory
    from spacy.language import Language
    from spacy.pipeline import Sentencizer
    from spacy.tokens import Span

    from models.labeler import CHEXPERT_TERMS, OTHER_FINDINGS, TERMS

    tables = {
        **TERMS,
        **{CHEXPERT_PREFIX + k: v for k, v in CHEXPERT_TERMS.items()},
        OTHER_FINDING: OTHER_FINDINGS,
    }
    term_res = {label: re.compile(r"(?<![\w-])(?:" + "|".join(pats) + r")(?![\w])") for label, pats in tables.items()}

    @Language.component("mmdx_line_breaks")
    def line_breaks(doc: Doc) -> Doc:
        for tok in doc[:-1]:
            if "\n" in tok.text_with_ws:
                doc[tok.i + 1].is_sent_start = True
        return doc

    @Language.component("mmdx_findings")
    def findings(doc: Doc) -> Doc:
        low = doc.text.lower()
        spans: list[Span] = []
        for label, rx in term_res.items():
            for m in rx.finditer(low):
                span = doc.char_span(m.start(), m.end(), label=label, alignment_mode="expand")
                if span is not None and len(span):
                    spans.append(span)
        doc.spans[SPAN_KEY] = spans
        return doc

    pipeline = spacy.blank("en")
    # "effusion.. Mild opacities": the tokenizer keeps ".." as one token, which still ends a sentence
    punct = [*Sentencizer.default_punct_chars, "..", "...", "...."]
    pipeline.add_pipe("sentencizer", config={"punct_chars": punct})
    pipeline.add_pipe("mmdx_line_breaks")
    pipeline.add_pipe("mmdx_findings")
    pipeline.add_pipe("negex", config={"neg_termset": termset(), "span_keys": [SPAN_KEY], "extension_name": NEG_ATTR})
    return pipeline


def parse(text: str) -> Doc:
    """Run the pipeline over one report."""
    return nlp()(text)


def negated(span: Any) -> bool:
    """Whether negspacy's NegEx negated a finding span."""
    return bool(getattr(span._, NEG_ATTR))
