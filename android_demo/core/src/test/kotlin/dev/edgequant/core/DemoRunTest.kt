package dev.edgequant.core

import kotlin.test.Test
import kotlin.test.assertEquals

class DemoRunTest {
    private val input = TensorSpec("x", listOf(1, 3), DType.UINT8, QuantParams(listOf(1f), listOf(0), 0))
    private val output = TensorSpec("y", listOf(1, 3), DType.UINT8, QuantParams(listOf(0.5f), listOf(0), 0))
    private fun manifest(samples: SamplesSpec?) = AppManifest(
        1, "test", ModelInfo("model.tflite", "m", "int8", 1, "0".repeat(64)),
        listOf(input), listOf(output), listOf("a", "b", "c"), Preprocess.IDENTITY, samples,
    )

    // A stand-in model for the loop alone: its output is its input, so class = argmax of the sample.
    private val echo: (ByteArray) -> ByteArray = { it.copyOf() }

    @Test
    fun predictsEverySampleThenTimesCyclingThroughThem() {
        val data = byteArrayOf(1, 9, 3, 7, 2, 7)
        val spec = SamplesSpec("s.bin", DType.UINT8, listOf(2, 3), Sha256.hex(data), listOf(1, 2))
        var clock = 0L
        val calls = mutableListOf<Int>()
        val run = DemoRun(manifest(spec), Samples.verified(spec, data, "s.bin"), InputSource.PUSHED) { clock.also { clock += 1_000_000 } }
        val result = run.run(RunConfig(warmupRuns = 3, timedRuns = 4, topK = 2), { calls.add(it[0].toInt()); echo(it) })
        assertEquals(listOf(1, 7, 1, 7, 1, 1, 7, 1, 7), calls) // 2 predictions, 3 warm-up, 4 timed
        assertEquals(listOf(listOf(1, 2), listOf(0, 2)), result.predictions.map { p -> p.top.map { it.index } })
        assertEquals(listOf(4.5f, 1.5f), result.predictions[0].top.map { it.score })
        assertEquals(1, result.top1Correct) // sample 1 expected 2, got 0: the 7/7 tie goes to the lower index
        assertEquals(4, result.latency.runs)
        assertEquals(1.0, result.latency.meanMs)
        val json = Json.parse(Json.write(result.toMap(mapOf("device" to "test")))) as Map<*, *>
        assertEquals("edgequant-app-result", json["format"])
        assertEquals("ok", json["status"])
        assertEquals("test", json["device"])
        assertEquals(mapOf("top1_correct" to 1L, "count" to 2L, "top1" to 0.5), json["accuracy"])
    }

    @Test
    fun withoutSamplesItTimesOneZeroInputAndPredictsNothing() {
        val run = DemoRun(manifest(null), null, InputSource.SYNTHETIC)
        assertEquals(listOf(0, 0, 0), run.inputs.single().map { it.toInt() })
        val result = run.run(RunConfig(warmupRuns = 0, timedRuns = 2), echo)
        assertEquals(0, result.predictions.size)
        assertEquals(null, result.toMap()["accuracy"])
    }
}
