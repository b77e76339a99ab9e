"""The synthetic cohort generator of SYNTHETIC_COHORT.md."""
