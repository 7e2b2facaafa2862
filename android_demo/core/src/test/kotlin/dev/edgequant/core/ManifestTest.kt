package dev.edgequant.core

import kotlin.test.Test
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertNull
import kotlin.test.assertTrue

class ManifestTest {
    private val sha = "ab".repeat(32)

    private fun manifest(
        samples: String = """{"file": "samples.bin", "dtype": "uint8", "shape": [2, 28, 28], "sha256": "$sha", "labels": [9, 2]}""",
        version: Int = 1,
        inputDtype: String = "int8",
    ) = """
        {"format": "edgequant-app-manifest", "version": $version, "created_by": "edgequant 0.1.0",
         "model": {"file": "model.tflite", "name": "fmnist_int8", "mode": "int8", "size_bytes": 1234, "sha256": "$sha"},
         "inputs": [{"name": "serving_default_x:0", "shape": [1, 28, 28, 1], "dtype": "$inputDtype",
                     "quantization": {"scale": [0.003921568859368563], "zero_point": [-128], "axis": 0}}],
         "outputs": [{"name": "Identity", "shape": [1, 10], "dtype": "int8",
                      "quantization": {"scale": [0.00390625], "zero_point": [-128], "axis": 0}}],
         "labels": ["T-shirt/top", "Trouser"],
         "preprocess": {"scale": 0.00392156862745098, "mean": [0.0], "std": [1.0], "layout": "nhwc"},
         "quantization_rounding": "half_to_even",
         "samples": $samples,
         "provenance": {"build_manifest": null}}
    """

    @Test
    fun readsEveryField() {
        val m = AppManifest.parse(manifest())
        assertEquals("fmnist_int8", m.model.name)
        assertEquals(1234L, m.model.sizeBytes)
        val input = m.inputs.single()
        assertEquals(DType.INT8, input.dtype)
        assertEquals(listOf(1, 28, 28, 1), input.shape)
        assertEquals(1f / 255f, input.quant!!.scale)
        assertEquals(-128, input.quant!!.zeroPoint)
        assertEquals(784L, input.byteSize)
        assertEquals((1.0 / 255).toFloat(), m.preprocess.scale)
        assertEquals(Layout.NHWC, m.preprocess.layout)
        assertEquals(listOf(9, 2), m.samples!!.labels)
        assertEquals("Trouser", m.label(1))
        assertEquals("class 7", m.label(7))
    }

    @Test
    fun samplesAreOptional() {
        assertNull(AppManifest.parse(manifest(samples = "null")).samples)
    }

    @Test
    fun errorsNameTheField() {
        fun message(text: String) = assertFailsWith<ManifestException> { AppManifest.parse(text, "app_manifest.json") }.message!!
        assertEquals(
            "app_manifest.json: version: this app reads version 1; got 2 (update the app or edgequant)",
            message(manifest(version = 2)),
        )
        assertTrue(message(manifest(inputDtype = "complex64")).startsWith("app_manifest.json: inputs[0].dtype: \"complex64\" is not supported"))
        val wrongShape = """{"file": "samples.bin", "dtype": "uint8", "shape": [2, 27, 28], "sha256": "$sha"}"""
        assertEquals(
            "app_manifest.json: samples.shape: [2, 27, 28] holds 756 values per sample; input serving_default_x:0 needs 784",
            message(manifest(samples = wrongShape)),
        )
        val escaping = """{"file": "../x.bin", "dtype": "uint8", "shape": [2, 28, 28], "sha256": "$sha"}"""
        assertTrue(message(manifest(samples = escaping)).contains("samples.file: expected a plain file name"))
        assertEquals("app_manifest.json: expected a JSON object at the top level", message("[1]"))
    }

    @Test
    fun samplesCheckTheirSha256AndDecodeEachDtype() {
        val spec = SamplesSpec("s.bin", DType.INT16, listOf(2, 2), Sha256.hex(byteArrayOf(1, 0, -1, -1, 0, -128, 5, 0)), null)
        val s = Samples.verified(spec, byteArrayOf(1, 0, -1, -1, 0, -128, 5, 0), "s.bin")
        assertEquals(listOf(1f, -1f), s.raw(0).toList())
        assertEquals(listOf(-32768f, 5f), s.raw(1).toList())
        val e = assertFailsWith<ManifestException> { Samples.verified(spec, byteArrayOf(0, 0, 0, 0, 0, 0, 0, 0), "s.bin") }
        assertTrue(e.message!!.startsWith("s.bin: sha256 "))
        assertFailsWith<ManifestException> { Samples(spec, ByteArray(3), "s.bin") }
    }
}
