"""One module per pipeline stage, each importing only what its stage runs.

A notebook imports its stage's module, so the `llome` modules a stage reaches (and hence its code
deps in dvc.yaml, and the code part of its results' provenance) are exactly the ones it can run.
This file imports nothing on purpose: importing one stage must not pull in the others.
"""
