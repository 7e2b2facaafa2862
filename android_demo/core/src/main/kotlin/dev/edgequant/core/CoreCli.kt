package dev.edgequant.core

import java.io.File
import kotlin.system.exitProcess

/**
 * The app's logic from the command line, without Android or an interpreter; the Python tests use it
 * to check that both sides read the same manifest the same way.
 *
 *   java -cp core.jar:kotlin-stdlib.jar dev.edgequant.core.CoreCli \
 *       --manifest DIR/app_manifest.json [--inputs-out inputs.bin] \
 *       [--outputs outputs.bin --latencies-ns latencies.txt --top-k 3] --out result.json
 *
 * --inputs-out: every sample's prepared input tensor bytes, concatenated.
 * --outputs: the model's first output tensor bytes for every sample, concatenated (computed elsewhere,
 *   e.g. by the LiteRT interpreter on the host); the run loop replays them in place of the interpreter.
 * --latencies-ns: one duration per line; the run loop's clock replays them, so `latency` in the result
 *   holds their statistics.
 */
object CoreCli {
    @JvmStatic
    fun main(args: Array<String>) {
        try {
            run(parseArgs(args))
        } catch (e: IllegalArgumentException) {
            System.err.println("eqcore: error: ${e.message}")
            exitProcess(2)
        }
    }

    private fun parseArgs(args: Array<String>): Map<String, String> {
        val known = setOf("--manifest", "--inputs-out", "--outputs", "--latencies-ns", "--top-k", "--out")
        val map = HashMap<String, String>()
        var i = 0
        while (i < args.size) {
            val key = args[i]
            require(key in known) { "unknown option $key (known: ${known.joinToString()})" }
            require(i + 1 < args.size) { "$key needs a value" }
            map[key] = args[i + 1]
            i += 2
        }
        require("--manifest" in map && "--out" in map) { "--manifest and --out are required" }
        return map
    }

    private fun run(opts: Map<String, String>) {
        val manifestFile = File(opts.getValue("--manifest"))
        val manifest = AppManifest.parse(manifestFile.readText(), manifestFile.path)
        val samples = manifest.samples?.let { spec ->
            val f = File(manifestFile.parentFile, spec.file)
            Samples.verified(spec, f.readBytes(), f.path)
        }
        val demo = DemoRun(manifest, samples, if (samples != null) InputSource.PUSHED else InputSource.SYNTHETIC, replayClock(opts["--latencies-ns"]))
        opts["--inputs-out"]?.let { path -> File(path).outputStream().use { out -> demo.inputs.forEach(out::write) } }

        val result = LinkedHashMap<String, Any?>()
        result["manifest"] = summary(manifest)
        opts["--outputs"]?.let { path ->
            val bytes = File(path).readBytes()
            val size = manifest.outputs[0].byteSize.toInt()
            require(bytes.size == size * demo.inputs.size) { "$path: ${bytes.size} bytes; expected ${demo.inputs.size} outputs of $size bytes" }
            val byInput = java.util.IdentityHashMap<ByteArray, ByteArray>()
            demo.inputs.forEachIndexed { i, input -> byInput[input] = bytes.copyOfRange(i * size, (i + 1) * size) }
            val timed = opts["--latencies-ns"]?.let { File(it).readLines().count(String::isNotBlank) } ?: 1
            val config = RunConfig(warmupRuns = 0, timedRuns = timed, topK = opts["--top-k"]?.toInt() ?: 3)
            result["run"] = demo.run(config, { byInput.getValue(it) }).toMap()
        }
        File(opts.getValue("--out")).writeText(Json.write(result))
    }

    /** A clock whose successive (start, end) readings are 0 and each given duration. */
    private fun replayClock(path: String?): () -> Long {
        if (path == null) return System::nanoTime
        val durations = File(path).readLines().filter(String::isNotBlank).map { it.trim().toLong() }
        var call = 0
        return {
            val i = call / 2
            val isEnd = call % 2 == 1
            call++
            if (isEnd) durations[i] else 0L
        }
    }

    private fun summary(m: AppManifest): Map<String, Any?> = linkedMapOf(
        "model_sha256" to m.model.sha256,
        "inputs" to m.inputs.map(::tensorSummary),
        "outputs" to m.outputs.map(::tensorSummary),
        "labels" to m.labels,
        "preprocess" to linkedMapOf("scale" to m.preprocess.scale, "mean" to m.preprocess.mean, "std" to m.preprocess.std, "layout" to m.preprocess.layout.name.lowercase()),
        "samples" to m.samples?.let { linkedMapOf("count" to it.count, "dtype" to it.dtype.jsonName, "shape" to it.shape, "labels" to it.labels) },
    )

    private fun tensorSummary(t: TensorSpec): Map<String, Any?> = linkedMapOf(
        "name" to t.name, "shape" to t.shape, "dtype" to t.dtype.jsonName,
        "scale" to t.quant?.scales, "zero_point" to t.quant?.zeroPoints,
    )
}
