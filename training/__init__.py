"""Training SD-MdaNet: the synthetic cohort, data sets, teachers, distillation, evaluation.

May import ``model`` and ``pipeline`` (I/O and the crop, not tasks).
"""
