"""Every coded concept lungpath's result objects use, in one place.

The SR writer, the SR reader and docs/conformance-codes.md all name concepts from here, so a
code cannot be spelled one way when written and another way when read back. Private concepts
live in the coding scheme ``99LUNGPATH`` (declared in each SR's Coding Scheme Identification
Sequence); the rest are DICOM (DCM), SNOMED CT (SCT) and UCUM concepts.
"""

from __future__ import annotations

from enum import StrEnum

from highdicom.coding_schemes import CodingSchemeIdentificationItem
from pydicom.sr.coding import Code

from model.pathology import Grade, Invasiveness, Pattern

SCHEME = "99LUNGPATH"
CONTRACT_VERSION = "1"  #: SR_CONTENT.md contract version written in every SR


def _lp(value: str, meaning: str) -> Code:
    return Code(value, SCHEME, meaning)


def coding_scheme_item() -> CodingSchemeIdentificationItem:
    """The Coding Scheme Identification Sequence item that declares ``99LUNGPATH``."""
    return CodingSchemeIdentificationItem(
        designator=SCHEME,
        name="lungpath result concepts",
        version=CONTRACT_VERSION,
        responsible_organization="lungpath",
    )


class AnalysisStatus(StrEnum):
    """How the analysis of one study revision ended (the SR's ANALYSIS_STATUS)."""

    COMPLETED = "COMPLETED"  #: at least one nodule analysed
    NO_NODULE = "NO_NODULE"  #: analysed, no nodule found
    NOT_ANALYZABLE = "NOT_ANALYZABLE"  #: no series could be analysed; the reason says why


# --- root-level items -------------------------------------------------------------------
RESULT_CONTRACT_VERSION = _lp("CONTRACT_VERSION", "Result contract version")
ANALYSIS_STATUS = _lp("ANALYSIS_STATUS", "Analysis status")
STATUS_VALUES: dict[AnalysisStatus, Code] = {
    AnalysisStatus.COMPLETED: _lp("COMPLETED", "Analysis completed"),
    AnalysisStatus.NO_NODULE: _lp("NO_NODULE", "No nodule found"),
    AnalysisStatus.NOT_ANALYZABLE: _lp("NOT_ANALYZABLE", "Not analyzable"),
}
COMMENT = Code("121106", "DCM", "Comment")
CHEST_IMAGING = Code("413815006", "SCT", "Chest imaging")

# --- per nodule: finding, site, measurements ---------------------------------------------
NODULE = Code("27925004", "SCT", "Nodule")
LUNG = Code("39607008", "SCT", "Lung")
RIGHT = Code("24028007", "SCT", "Right")
LEFT = Code("7771000", "SCT", "Left")
LONG_AXIS = Code("103339001", "SCT", "Long axis")
SHORT_AXIS = Code("103340004", "SCT", "Short axis")
VOLUME = Code("118565006", "SCT", "Volume")
SOLID_DIAMETER = _lp("SOLID_DIAMETER", "Solid component long axis")
CTR = _lp("CTR", "Consolidation-to-tumour ratio")
MEAN_ATTENUATION = Code("112181", "DCM", "Mean Attenuation Coefficient")

# --- per nodule: model outputs -----------------------------------------------------------
CLASS_PROBABILITIES: dict[Invasiveness, Code] = {
    Invasiveness.AIS: _lp("P_AIS", "Probability of adenocarcinoma in situ"),
    Invasiveness.MIA: _lp("P_MIA", "Probability of minimally invasive adenocarcinoma"),
    Invasiveness.IAC: _lp("P_IAC", "Probability of invasive adenocarcinoma"),
}
PATTERN_PROPORTIONS: dict[Pattern, Code] = {
    Pattern.LEPIDIC: _lp("PROP_LEPIDIC", "Proportion of lepidic pattern"),
    Pattern.ACINAR: _lp("PROP_ACINAR", "Proportion of acinar pattern"),
    Pattern.PAPILLARY: _lp("PROP_PAPILLARY", "Proportion of papillary pattern"),
    Pattern.MICROPAPILLARY: _lp("PROP_MICROPAPILLARY", "Proportion of micropapillary pattern"),
    Pattern.SOLID: _lp("PROP_SOLID", "Proportion of solid pattern"),
    Pattern.CRIBRIFORM: _lp("PROP_CRIBRIFORM", "Proportion of cribriform pattern"),
    Pattern.COMPLEX_GLANDULAR: _lp(
        "PROP_COMPLEX_GLANDULAR", "Proportion of complex glandular pattern"
    ),
}
UNCERTAINTY = _lp("UNCERTAINTY", "Predictive uncertainty")

# --- per nodule: qualitative evaluations -------------------------------------------------
INVASIVENESS = _lp("INVASIVENESS", "Invasiveness")
INVASIVENESS_VALUES: dict[Invasiveness, Code] = {
    Invasiveness.AIS: _lp("AIS", "Adenocarcinoma in situ"),
    Invasiveness.MIA: _lp("MIA", "Minimally invasive adenocarcinoma"),
    Invasiveness.IAC: _lp("IAC", "Invasive adenocarcinoma"),
}
PREDOMINANT_PATTERN = _lp("PREDOMINANT_PATTERN", "Predominant histologic pattern")
PATTERN_VALUES: dict[Pattern, Code] = {
    Pattern.LEPIDIC: _lp("LEPIDIC", "Lepidic"),
    Pattern.ACINAR: _lp("ACINAR", "Acinar"),
    Pattern.PAPILLARY: _lp("PAPILLARY", "Papillary"),
    Pattern.MICROPAPILLARY: _lp("MICROPAPILLARY", "Micropapillary"),
    Pattern.SOLID: _lp("SOLID", "Solid"),
    Pattern.CRIBRIFORM: _lp("CRIBRIFORM", "Cribriform"),
    Pattern.COMPLEX_GLANDULAR: _lp("COMPLEX_GLANDULAR", "Complex glandular"),
}
IASLC_GRADE = _lp("IASLC_GRADE", "IASLC grade")
GRADE_VALUES: dict[Grade, Code] = {
    Grade.G1: _lp("G1", "IASLC grade 1"),
    Grade.G2: _lp("G2", "IASLC grade 2"),
    Grade.G3: _lp("G3", "IASLC grade 3"),
    Grade.NA: _lp("NA", "IASLC grade not applicable"),
}

# --- SEG ---------------------------------------------------------------------------------
MORPHOLOGICALLY_ABNORMAL_STRUCTURE = Code(
    "49755003", "SCT", "Morphologically abnormal structure"
)

# --- UCUM units --------------------------------------------------------------------------
MM = Code("mm", "UCUM", "millimeter")
MM3 = Code("mm3", "UCUM", "cubic millimeter")
RATIO = Code("{ratio}", "UCUM", "ratio")
HU = Code("[hnsf'U]", "UCUM", "Hounsfield unit")
PERCENT = Code("%", "UCUM", "percent")

#: decimals each NUM value is written with (display in the PACS viewer; the parser returns
#: exactly these rounded values)
DECIMALS_LENGTH = 2
DECIMALS_VOLUME = 1
DECIMALS_CTR = 3
DECIMALS_HU = 1
DECIMALS_PERCENT = 2


def private_codes() -> list[Code]:
    """Every ``99LUNGPATH`` concept (for the conformance table and its test)."""
    return [
        RESULT_CONTRACT_VERSION, ANALYSIS_STATUS, *STATUS_VALUES.values(),
        SOLID_DIAMETER, CTR, *CLASS_PROBABILITIES.values(), *PATTERN_PROPORTIONS.values(),
        UNCERTAINTY, INVASIVENESS, *INVASIVENESS_VALUES.values(), PREDOMINANT_PATTERN,
        *PATTERN_VALUES.values(), IASLC_GRADE, *GRADE_VALUES.values(),
    ]


def standard_codes() -> list[Code]:
    """Every DCM / SCT / UCUM concept lungpath writes explicitly."""
    return [
        COMMENT, CHEST_IMAGING, NODULE, LUNG, RIGHT, LEFT, LONG_AXIS, SHORT_AXIS, VOLUME,
        MEAN_ATTENUATION, MORPHOLOGICALLY_ABNORMAL_STRUCTURE, MM, MM3, RATIO, HU, PERCENT,
    ]
