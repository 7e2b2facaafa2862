"""Defaults the quick path (`edgequant quantize`, `init`, edgequant.quick) fills a recipe with.

A module of its own, importing nothing: the command line shows them in its help without loading the recipe schema.
"""

CALIBRATION_SAMPLES = 500  # enough for stable int8 ranges on the models tried; calibration is the slow part
