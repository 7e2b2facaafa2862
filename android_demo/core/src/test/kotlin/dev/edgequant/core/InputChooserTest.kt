package dev.edgequant.core

import kotlin.test.Test
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertNull

class InputChooserTest {
    private val sha = "0".repeat(64)
    private val input = TensorSpec("x", listOf(1, 2, 2, 1), DType.INT8, QuantParams(listOf(0.5f), listOf(-1), 0))
    private val output = TensorSpec("y", listOf(1, 3), DType.INT8, QuantParams(listOf(0.5f), listOf(0), 0))
    private fun manifest(samples: SamplesSpec? = null, labels: List<String> = emptyList()) =
        AppManifest(1, "t", ModelInfo("model.tflite", "m", "int8", 1, sha), listOf(input), listOf(output), labels, Preprocess.IDENTITY, samples)

    private val bundledData = byteArrayOf(1, 2, 3, 4, 5, 6, 7, 8)
    private fun bundledJson(shape: String) =
        """{"file": "samples.bin", "dtype": "uint8", "shape": $shape, "sha256": "${Sha256.hex(bundledData)}", "labels": [0, 2], "class_names": ["a", "b", "c"]}"""

    @Test
    fun pushedSamplesWinAndAreChecked() {
        val data = byteArrayOf(9, 9, 9, 9)
        val spec = SamplesSpec("samples.bin", DType.UINT8, listOf(1, 2, 2, 1), Sha256.hex(data), null)
        val chosen = InputChooser.choose(manifest(spec), { data }, bundledJson("[2, 4]"), { bundledData })
        assertEquals(InputSource.PUSHED, chosen.source)
        val missing = assertFailsWith<ManifestException> { InputChooser.choose(manifest(spec), { null }, null, { bundledData }) }
        assertEquals("samples.bin: listed in app_manifest.json but not on the device; push again", missing.message)
    }

    @Test
    fun bundledSamplesFitOrAreLeftOut() {
        val chosen = InputChooser.choose(manifest(), { null }, bundledJson("[2, 2, 2, 1]"), { bundledData })
        assertEquals(InputSource.BUNDLED, chosen.source)
        assertEquals(listOf("a", "b", "c"), chosen.manifest.labels) // the manifest had none
        assertEquals(listOf(5f, 6f, 7f, 8f), chosen.samples!!.raw(1).toList())
        val kept = InputChooser.choose(manifest(labels = listOf("x", "y", "z")), { null }, bundledJson("[2, 4]"), { bundledData })
        assertEquals(listOf("x", "y", "z"), kept.manifest.labels)
        val tooBig = InputChooser.choose(manifest(), { null }, """{"file": "s.bin", "dtype": "uint8", "shape": [1, 9], "sha256": "$sha"}""", { ByteArray(9) })
        assertEquals(InputSource.SYNTHETIC, tooBig.source)
        assertNull(tooBig.samples)
    }

    @Test
    fun tensorCheckNamesTheDifference() {
        assertNull(TensorCheck.mismatch(input, "INT8", intArrayOf(1, 2, 2, 1), 0.5f, -1))
        assertEquals("x: the model says uint8, the manifest int8", TensorCheck.mismatch(input, "UINT8", intArrayOf(1, 2, 2, 1), 0.5f, -1))
        assertEquals("x: the model's shape is [1, 4], the manifest's [1, 2, 2, 1]", TensorCheck.mismatch(input, "INT8", intArrayOf(1, 4), 0.5f, -1))
        assertEquals(
            "x: the model quantizes with scale 0.25, zero point -1; the manifest says 0.5, -1",
            TensorCheck.mismatch(input, "INT8", intArrayOf(1, 2, 2, 1), 0.25f, -1),
        )
    }

    @Test
    fun runConfigFromIntentExtras() {
        val extras = mapOf("delegate" to "gpu", "threads" to "4", "runs" to "20")
        val config = runConfigOf({ extras[it] }, { extras[it]?.toInt() })
        assertEquals(RunConfig(delegate = "gpu", threads = 4, xnnpack = false, warmupRuns = 5, timedRuns = 20, topK = 3), config)
        assertEquals(RunConfig(), runConfigOf({ null }, { null }))
        assertFailsWith<IllegalArgumentException> { runConfigOf({ if (it == "delegate") "tpu" else null }, { null }) }
        assertFailsWith<IllegalArgumentException> { runConfigOf({ null }, { if (it == "threads") 0 else null }) }
    }
}
