"""Source headers as highdicom reads them.

highdicom copies the patient and study attributes of the source images into each new object
by attribute access, so a CT that omits a Type 2 attribute (Patient's Birth Date, Accession
Number, ...), which scanners often do, would make it fail. The result objects take them from
a view of the source in which these attributes are present, empty where the source lacks them.
"""

from __future__ import annotations

from pydicom import Dataset

PATIENT_STUDY_TYPE2 = (
    "PatientID", "PatientName", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID",
    "StudyDate", "StudyTime", "ReferringPhysicianName",
)


def with_type2_attributes(source: Dataset) -> Dataset:
    """A new Dataset sharing ``source``'s elements (no pixel copy), with every attribute of
    ``PATIENT_STUDY_TYPE2`` present; ``source`` itself is left unchanged."""
    view = Dataset()
    view.update(source)
    for keyword in PATIENT_STUDY_TYPE2:
        if keyword not in view:
            setattr(view, keyword, None)
    return view
