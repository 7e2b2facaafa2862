package dev.edgequant.core

/** The inputs of a run, and the manifest to read them with (bundled samples may bring class names). */
data class ChosenInputs(val manifest: AppManifest, val samples: Samples?, val source: InputSource)

object InputChooser {
    const val BUNDLED_JSON = "bundled/samples.json"

    /**
     * Samples pushed with the model when the manifest lists them; else the APK's bundled samples when they
     * fit the model's input; else none (one synthetic input, latency only).
     * [readPushed] returns a file from the manifest's folder, or null when it is missing.
     */
    fun choose(
        manifest: AppManifest,
        readPushed: (String) -> ByteArray?,
        bundledJson: String?,
        readBundled: (String) -> ByteArray,
    ): ChosenInputs {
        manifest.samples?.let { spec ->
            val data = readPushed(spec.file) ?: throw ManifestException("${spec.file}: listed in ${AppManifest.FILE_NAME} but not on the device; push again")
            return ChosenInputs(manifest, Samples.verified(spec, data, spec.file), InputSource.PUSHED)
        }
        if (bundledJson != null) {
            val json = JsonObject.parse(bundledJson, BUNDLED_JSON)
            val spec = SamplesSpec.parse(json)
            val perSample = spec.shape.drop(1).fold(1L) { a, d -> a * d }
            if (perSample == manifest.inputs[0].elementCount) {
                val samples = Samples.verified(spec, readBundled(spec.file), "bundled/${spec.file}")
                val classes = manifest.outputs[0].shape.last()
                val names = if (json.has("class_names")) json.strings("class_names") else emptyList()
                val withNames = if (manifest.labels.isEmpty() && names.size == classes) manifest.copy(labels = names) else manifest
                return ChosenInputs(withNames, samples, InputSource.BUNDLED)
            }
        }
        return ChosenInputs(manifest, null, InputSource.SYNTHETIC)
    }
}

object TensorCheck {
    /**
     * Why the interpreter's tensor differs from the manifest's description, or null when they agree.
     * [dtype] is the runtime's type name in any case (e.g. "INT8"); [scale]/[zeroPoint] its per-tensor params.
     */
    fun mismatch(spec: TensorSpec, dtype: String, shape: IntArray, scale: Float, zeroPoint: Int): String? {
        if (dtype.lowercase() != spec.dtype.jsonName) return "${spec.name}: the model says ${dtype.lowercase()}, the manifest ${spec.dtype.jsonName}"
        if (shape.toList() != spec.shape) return "${spec.name}: the model's shape is ${shape.toList()}, the manifest's ${spec.shape}"
        val q = spec.quant
        if (q != null && q.perTensor && (scale != q.scale || zeroPoint != q.zeroPoint)) {
            return "${spec.name}: the model quantizes with scale $scale, zero point $zeroPoint; the manifest says ${q.scale}, ${q.zeroPoint}"
        }
        return null
    }
}

/** The run settings from an intent's extras (autorun) or the screen; [int] and [string] return null when unset. */
fun runConfigOf(string: (String) -> String?, int: (String) -> Int?): RunConfig {
    val delegate = string("delegate") ?: "cpu"
    require(delegate in listOf("cpu", "gpu", "nnapi")) { "delegate must be cpu, gpu or nnapi, got \"$delegate\"" }
    val defaults = RunConfig()
    return RunConfig(
        delegate = delegate,
        threads = int("threads") ?: defaults.threads,
        xnnpack = delegate == "cpu",
        warmupRuns = int("warmup") ?: defaults.warmupRuns,
        timedRuns = int("runs") ?: defaults.timedRuns,
        topK = int("topk") ?: defaults.topK,
    )
}
