"""SD-MdaNet: modules, losses, the CropSpec preprocessing contract, checkpoints, Predictor.

Imports nothing else of lungpath's (DESIGN.md).
"""
