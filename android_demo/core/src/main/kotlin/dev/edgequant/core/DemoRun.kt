package dev.edgequant.core

/** Where the inputs of a run came from. */
enum class InputSource(val jsonName: String) { PUSHED("pushed"), BUNDLED("bundled"), SYNTHETIC("synthetic") }

data class RunConfig(
    val delegate: String = "cpu",
    val threads: Int = 1,
    val xnnpack: Boolean = true,
    val warmupRuns: Int = 5,
    val timedRuns: Int = 50,
    val topK: Int = 3,
) {
    init {
        require(threads >= 1) { "threads must be >= 1, got $threads" }
        require(warmupRuns >= 0) { "warm-up runs must be >= 0, got $warmupRuns" }
        require(timedRuns >= 1) { "timed runs must be >= 1, got $timedRuns" }
        require(topK >= 1) { "top-k must be >= 1, got $topK" }
    }

    fun toMap(): Map<String, Any?> = linkedMapOf(
        "delegate" to delegate, "threads" to threads, "xnnpack" to xnnpack,
        "warmup_runs" to warmupRuns, "timed_runs" to timedRuns, "top_k" to topK,
    )
}

data class Prediction(val sample: Int, val expected: Int?, val top: List<Ranked>) {
    fun toMap(manifest: AppManifest): Map<String, Any?> = linkedMapOf(
        "sample" to sample,
        "expected" to expected,
        "expected_label" to expected?.let(manifest::label),
        "top" to top.map { linkedMapOf("index" to it.index, "label" to manifest.label(it.index), "score" to it.score) },
    )
}

data class RunResult(
    val manifest: AppManifest,
    val config: RunConfig,
    val inputSource: InputSource,
    val predictions: List<Prediction>,
    val latency: LatencyStats,
) {
    val top1Correct: Int get() = predictions.count { it.expected != null && it.top.first().index == it.expected }
    val labelled: Int get() = predictions.count { it.expected != null }

    /** The result file the app writes (`result.json`); [extra] adds what only the Android layer knows (device, time). */
    fun toMap(extra: Map<String, Any?> = emptyMap()): Map<String, Any?> = linkedMapOf<String, Any?>(
        "format" to RESULT_FORMAT,
        "version" to 1,
        "status" to "ok",
        "error" to null,
        "model" to linkedMapOf("file" to manifest.model.file, "name" to manifest.model.name, "mode" to manifest.model.mode, "sha256" to manifest.model.sha256),
        "config" to config.toMap(),
        "input_source" to inputSource.jsonName,
        "latency" to latency.toMap(),
        "accuracy" to if (labelled > 0) linkedMapOf("top1_correct" to top1Correct, "count" to labelled, "top1" to top1Correct.toDouble() / labelled) else null,
        "predictions" to predictions.map { it.toMap(manifest) },
    ).apply { putAll(extra) }

    companion object {
        const val RESULT_FORMAT = "edgequant-app-result"
        const val FILE_NAME = "result.json"

        /** The result file for a run that failed: the message says what went wrong. */
        fun errorMap(message: String, extra: Map<String, Any?> = emptyMap()): Map<String, Any?> =
            linkedMapOf<String, Any?>("format" to RESULT_FORMAT, "version" to 1, "status" to "error", "error" to message).apply { putAll(extra) }
    }
}

/**
 * The app's benchmark loop, independent of Android: [invoke] runs the interpreter on one input's bytes
 * and returns the first output's bytes. The Android layer passes LiteRT; tests replay real outputs.
 */
class DemoRun(
    private val manifest: AppManifest,
    private val samples: Samples?,
    private val inputSource: InputSource,
    private val nanoTime: () -> Long = System::nanoTime,
) {
    private val preparer = InputPreparer(manifest.inputs[0], manifest.preprocess)

    /** Every sample's input bytes; one all-zero raw sample when there are no samples (latency only). */
    val inputs: List<ByteArray> = if (samples == null) {
        listOf(preparer.prepare(FloatArray(manifest.inputs[0].elementCount.toInt())))
    } else {
        (0 until samples.count).map { preparer.prepare(samples.raw(it)) }
    }

    fun run(config: RunConfig, invoke: (ByteArray) -> ByteArray, progress: (String) -> Unit = {}): RunResult {
        val predictions = if (samples == null) emptyList() else inputs.indices.map { i ->
            val scores = OutputDecoder.dequantize(invoke(inputs[i]), manifest.outputs[0])
            Prediction(i, samples.label(i), TopK.of(scores, config.topK))
        }
        progress("warm-up: ${config.warmupRuns} runs")
        repeat(config.warmupRuns) { invoke(inputs[it % inputs.size]) }
        progress("timing: ${config.timedRuns} runs")
        val nanos = LongArray(config.timedRuns) {
            val input = inputs[it % inputs.size]
            val t0 = nanoTime()
            invoke(input)
            nanoTime() - t0
        }
        return RunResult(manifest, config, inputSource, predictions, LatencyStats.ofNanos(nanos))
    }
}
