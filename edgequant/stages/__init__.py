"""The stages of `edgequant build`, one module each, run in order by `edgequant.pipeline`.

`context` (the state one build's stages share) -> `variants` (convert each variant) -> `onnx` (the ONNX
copies) -> `evaluation` (every model on the same data) -> `host` (timed on this machine) -> `devices`
(estimated on simulated devices) -> `gate` (each variant's gates) -> `assemble` (the report) ->
`manifest` (what the output directory holds and where it came from).
"""
