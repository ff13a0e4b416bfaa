"""Per-label lexicon of the rule-based report labeler.

Each CT-RATE label has a list of :class:`Rule` s. A rule fires on a mention (a regular-expression
match in a normalised sentence, see :mod:`ctvl.eval.labeler.text`) when the sentence also matches
``where`` (if given) and does not match ``unless`` (if given; optionally only the comma-delimited
clause around the mention, one item of a findings list); the mention then counts unless it lies in a
negation scope (:mod:`ctvl.eval.labeler.negation`).

Conventions of the CT-RATE manual annotations that the rules follow (learnt on the development part
of the annotated reports, never on the held-out part):

* any affirmed lymph node counts as lymphadenopathy, even "millimetric" or "not reaching
  pathological size";
* "fibroatelectatic" / "sequelae" / "fibrotic bands" are pulmonary fibrotic sequelae, not
  atelectasis;
* calcified or atheromatous plaques count as arterial wall calcification when a non-coronary artery
  (aorta, its branches, "vascular structures") carries them, and as coronary calcification when the
  coronary arteries (LAD, LCx, RCA) do;
* hedged findings ("nodule?", "possible consolidation") count as present.

The rules are plain medical vocabulary written by hand; no report text is stored here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    """One mention pattern of a label.

    Attributes:
        pattern: regex of the mention in a normalised sentence.
        where: the sentence must also match this regex (context, e.g. a location).
        unless: the sentence must not match this regex.
        negatable: whether negation scopes apply to the mention.
        clause_unless: test ``unless`` on the comma-delimited clause around the mention (one item
            of a findings list) instead of the whole sentence.
    """

    pattern: re.Pattern[str]
    where: re.Pattern[str] | None = None
    unless: re.Pattern[str] | None = None
    negatable: bool = True
    clause_unless: bool = False


def _r(
    pattern: str,
    where: str | None = None,
    unless: str | None = None,
    negatable: bool = True,
    clause_unless: bool = False,
) -> Rule:
    return Rule(
        re.compile(pattern),
        None if where is None else re.compile(where),
        None if unless is None else re.compile(unless),
        negatable,
        clause_unless,
    )


_LUNG = (
    r"\b(?:lung|lungs|lobe|lobes|lingula|lingular|segment|segments|parenchyma\w*|pulmonary|apex|apices|apical|"
    r"basal|subpleural|hemithorax|perihilar|fissure)\b"
)
_CALC = r"\b(?:calcif\w*|atherom\w*|atheroscl\w*|atromous|plaques?)\b"
_CORONARY = r"\b(?:coronary|lad|lcx|rca|circumflex|left anterior descending|left main)\b"
_OTHER_ARTERY = (
    r"\b(?:(?<!\babdominal )aort\w*|arch|arcus|carotid|subclavian|brachiocephalic|innominate|supraaortic|"
    r"vascular|vessels?|(?<!coronary )(?<!iliac )(?<!renal )(?<!mesenteric )arter(?:y|ies|ial))\b"
)
_NOT_ARTERY = r"\b(?:valve|valvular|pleura\w*|lymph|nodules?|nodular|liver|kidney|spleen|pancrea\w*|granulom\w*)\b"
_W = r"(?:\W+\w+){0,%d}\W+"  # up to N words in between
_OTHER_ORGAN = (
    r"\b(?:liver|hepatic|thyroid|adrenal|kidneys?|renal|breasts?|spleen|splenic|pancrea\w*|goiter|"
    r"lymph|schmorl|mesenter\w*|subcutaneous|bone|vertebra\w*|pleura|pleural|colon|peritone\w*|"
    r"ventric\w*|gallbladder|uter\w*|ovar\w*|muscle)\b"
)

# lung density increases count as opacity when qualified like this (bare "sequelae density increases" do not)
_QUALIFIER = (
    r"\b(?:linear|dependent|depandant|dependant|mild|nodular|diffuse|acinar|consolidative|patchy|focal|hazy|faint"
    r"|nonspecific|irregular|alveolar|slight)"
)
_DENSITY = (
    r"(?:density increases?|densities|density|increases? in (?:\w+ )?density|increased density|density increments?)"
)

LEXICON: dict[str, tuple[Rule, ...]] = {
    "Medical material": (
        _r(
            r"\b(?:catheter\w*|cannula\w*|pacemaker\w*|pace maker|prosthe\w*|port chamber|port\b|"
            r"(?:nasogastric|endotracheal|tracheostomy|chest|thoracic|drainage|feeding|gastrostomy|thorax) tubes?|"
            r"tubes? (?:extending|terminat\w*|placed|inserted|whose|with its tip)|drains?\b|drainage catheter|"
            r"sternotomy|(?:sternal |surgical |metallic )?sutures?\b|wires?\b|clips?\b|surgical material\w*|"
            r"metallic\w*|metal\w*|valve replacement|prosthetic|bypass graft\w*|graft\w*|"
            r"electrode\w*|icd|defibrillator|cabg|acbg|coil\w*|screws?|k wire|staples?|stapler|"
            r"osteosynthesis|ostesynthesis|fixation material\w*|fixators?|peg\b|peg material)",
            unless=r"\b(?:suture compression|suture line without)\b",
        ),
        _r(r"\bstent\w*"),
    ),
    "Arterial wall calcification": (_r(_CALC, where=_OTHER_ARTERY, unless=_NOT_ARTERY, clause_unless=True),),
    "Cardiomegaly": (
        _r(r"\bcardiomegal\w*"),
        _r(
            r"\b(?:heart|cardiac)(?: size| sizes| dimensions?| contours?| volume)? (?:is |are |was |were |has |have )?"
            r"(?:\w+ly )?(?:increased|enlarged|larger than normal|large)"
        ),
        _r(
            r"\b(?:increased|enlarged) (?:heart|cardiac)(?: size| dimensions?)?"
            r"|\bincrease in (?:the )?(?:heart|cardiac) (?:size|dimensions?)"
        ),
        _r(
            r"\b(?:cardiothorac\w*|cardiothorax) (?:index|ratio)\w* (?:has |have |is |was )?(?:\w+ly )?increased|"
            r"\bctr (?:has |is |was )?increased"
            r"|\bincrease in (?:the )?(?:cardiothorac\w*|cardiothorax) (?:index|ratio)"
        ),
    ),
    "Pericardial effusion": (
        _r(r"\bpericardi\w* (?:\w+ )?(?:effusion|fluid)"),
        _r(r"\b(?:effusion|fluid)\b" + _W % 16 + r"(?:pericardi\w* (?:space|cavity|area|recess|sac)|pericardium)\b"),
        _r(r"\bpericardi\w* thicken\w*" + _W % 2 + r"effusion"),
    ),
    "Coronary artery wall calcification": (_r(_CALC, where=_CORONARY, unless=r"\bvalv\w*"),),
    "Hiatal hernia": (
        _r(r"\b(?:hiatal|hiatus)(?: \w+)? hernia\w*"),
        _r(r"\bhernia\w*", where=r"\b(?:esophag\w*|gastroesophag\w*|hiatus|hiatal|diaphragm\w*)"),
    ),
    "Lymphadenopathy": (
        _r(
            r"\blymph ?adenopath\w*|\blymphadeopath\w*|\blaps?\b|\blymph ?nodes?\b(?! stations?)|\blymphadenomegal\w*",
            unless=r"\b(?:intrapulmonary|intramammar\w*|intraparenchymal|subpleural|fissur\w*) (?:\w+ )?lymph nodes?",
        ),
    ),
    "Emphysema": (
        _r(r"\bemphysem\w*"),
        _r(r"\bbullae?\b|\bbullous\b|\bblebs?\b"),
    ),
    "Atelectasis": (
        _r(r"\b(?<!fibro)(?<!fibro )(?<!fibrotic )atel[ae]ct\w*"),  # "sequela fibrotic atelectasis" is fibrotic
    ),
    "Lung nodule": (
        _r(r"\b(?:micro)?nodules?\b|\bnodular (?:lesion|lesions|formation)\b", unless=_OTHER_ORGAN),
        _r(
            r"\b(?:micro)?nodules?\b",
            where=r"\b(?:lung|lungs|pulmonary)\b",
            unless=r"\bthyroid|\bschmorl|\bpleural nodule",
        ),
    ),
    "Lung opacity": (
        _r(r"\b(?:ground|frosted|matte?) ?glass\w*(?! nodul\w*)|\bopacit\w*"),
        _r(_QUALIFIER + r" (?:\w+ )?" + _DENSITY, where=_LUNG),
    ),
    "Pulmonary fibrotic sequela": (
        _r(
            r"\bfibro ?atel[ae]ct\w*|\b(?:pleuro ?parenchymal|parenchymal) band\w*|\bfibrotic\b|\bfibrosis\b"
            r"|\bfibrous bands?"
        ),
        _r(
            r"\bsequel\w*", unless=r"\b(?:kidneys?|renal|humer\w*|rib|ribs|fracture|bone|vertebra\w*|pyelonephrit\w*)\b"
        ),
    ),
    "Pleural effusion": (
        _r(r"\bpleural (?:\w+ )?(?:effusion|fluid)"),
        _r(
            r"\beffusion",
            where=r"\b(?:pleura\w*|hemithorax|hemithoraces|bilateral|right|left|both)\b",
            unless=r"\b(?:pericardi\w*|perirenal|perinephric|kidneys?|renal|perihepatic|perisplenic|abdom\w*|pelvi\w*"
            r"|joint)\b",
            clause_unless=True,
        ),
    ),
    "Mosaic attenuation pattern": (_r(r"\bmosaic\w*"),),
    "Peribronchial thickening": (
        _r(r"\bperibronch\w*" + _W % 4 + r"(?:thicken\w*|thickness)"),
        _r(r"\b(?:thicken\w*|thickness increase\w*|increase in (?:\w+ )?thickness)" + _W % 8 + r"peribronch\w*"),
        _r(r"\bperibronchial (?:cuffing|density)"),
    ),
    "Consolidation": (_r(r"\bconsolidat\w*"),),
    "Bronchiectasis": (_r(r"\bbronchiecta\w*|\bbronch\w* ectasi\w*|\bectasi\w*" + _W % 3 + r"bronch\w*"),),
    "Interlobular septal thickening": (
        _r(r"\bsept(?:al|a|um)\b" + _W % 2 + r"(?:thicken\w*|thickness|clarification|prominen\w*)"),
        _r(
            r"\b(?:thicken\w*|thickness increase\w*|increase in (?:\w+ )?thickness|prominen\w*)"
            + _W % 5
            + r"(?:interlobular |interlobar )?sept(?:al|a|um)\b",
            unless=r"\binterventricular|\bnasal",
        ),
        _r(r"\binterstitial (?:edema|thickening)|\bthicken\w*" + _W % 2 + r"interstitial elements"),
    ),
}
