"""The DICOM door: C-ECHO / C-STORE SCP, access control, TLS, durable storage, study stability.

May import ``db`` only; never torch (DESIGN.md).
"""
