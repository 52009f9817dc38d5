"""Training stage: build local models, launch Axolotl runs, (later) merge adapters.

python -m training build-tiny | build-model | train | demo   (see ``python -m training -h``)
"""
