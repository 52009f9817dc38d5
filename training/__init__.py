"""Training stage: build local models, launch Axolotl runs, keep each run's record and model
card, merge adapters.

python -m training build-tiny | build-model | train | merge   (see ``python -m training -h``)
"""
