"""What a build leaves behind: the output directory, its artifacts and manifest, the model registry."""
