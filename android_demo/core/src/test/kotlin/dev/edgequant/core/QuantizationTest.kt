package dev.edgequant.core

import kotlin.test.Test
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith

class QuantizationTest {
    private fun q(scale: Float, zp: Int) = QuantParams(listOf(scale), listOf(zp), 0)

    @Test
    fun tiesRoundHalfToEvenLikeNumpy() {
        // x / 0.5 lands exactly on .5: np.round gives the even neighbour.
        val cases = mapOf(0.25f to 0, 0.75f to 2, 1.25f to 2, 1.75f to 4, -0.25f to 0, -0.75f to -2, -1.25f to -2)
        for ((x, expected) in cases) assertEquals(expected, Quantization.quantize(x, q(0.5f, 0), DType.INT8), "x=$x")
    }

    @Test
    fun theZeroPointIsAddedBeforeRounding() {
        // rint(0.5 + -127) = rint(-126.5) = -126, whereas rint(0.5) + -127 would be -127.
        assertEquals(-126, Quantization.quantize(0.5f, q(1f, -127), DType.INT8))
        assertEquals(-128, Quantization.quantize(0.5f, q(1f, -128), DType.INT8)) // rint(-127.5) = -128
    }

    @Test
    fun divisionAndAdditionHappenInFloat32() {
        // Found with NumPy: in float32 x / scale is exactly 45.5 (rounds to 46); in float64 it is
        // 45.49999908 (rounds to 45). NumPy computes in float32 for a float32 array, so must we.
        val x = 2.4942586f
        val scale = 0.054818872f
        assertEquals(45.5f, x / scale)
        assertEquals(45, Math.rint(x.toDouble() / scale.toDouble()).toInt())
        assertEquals(46, Quantization.quantize(x, q(scale, 0), DType.INT8))
    }

    @Test
    fun clampsToTheDtypeRange() {
        assertEquals(127, Quantization.quantize(10f, q(0.01f, 0), DType.INT8))
        assertEquals(-128, Quantization.quantize(-10f, q(0.01f, 0), DType.INT8))
        assertEquals(255, Quantization.quantize(10f, q(0.01f, 0), DType.UINT8))
        assertEquals(0, Quantization.quantize(-10f, q(0.01f, 128), DType.UINT8))
        assertEquals(32767, Quantization.quantize(1e9f, q(1f, 0), DType.INT16))
    }

    @Test
    fun withoutQuantizationParametersItTruncatesLikeAstype() {
        assertEquals(2, Quantization.quantize(2.9f, null, DType.INT8))
        assertEquals(-2, Quantization.quantize(-2.9f, null, DType.INT8))
    }

    @Test
    fun nanIsRejected() {
        assertFailsWith<IllegalArgumentException> { Quantization.quantize(Float.NaN, q(1f, 0), DType.INT8) }
    }

    @Test
    fun dequantizeUndoesTheZeroPointThenScales() {
        assertEquals(0f, Quantization.dequantize(-128, q(1f / 256f, -128)))
        assertEquals(255f / 256f, Quantization.dequantize(127, q(1f / 256f, -128)))
        assertEquals(-3f, Quantization.dequantize(-3, null))
    }

    @Test
    fun outputBytesDecodeLittleEndianPerDtype() {
        val int8 = TensorSpec("o", listOf(1, 3), DType.INT8, q(0.5f, 1))
        assertEquals(listOf(-1f, 0f, 63f), OutputDecoder.dequantize(byteArrayOf(-1, 1, 127), int8).toList())
        val int16 = TensorSpec("o", listOf(2), DType.INT16, q(1f, 0))
        assertEquals(listOf(-2f, 258f), OutputDecoder.dequantize(byteArrayOf(-2, -1, 2, 1), int16).toList())
        val f32 = TensorSpec("o", listOf(1), DType.FLOAT32, null)
        assertEquals(listOf(1f), OutputDecoder.dequantize(byteArrayOf(0, 0, 0x80.toByte(), 0x3f), f32).toList())
        val perChannel = TensorSpec("o", listOf(2, 2), DType.INT8, QuantParams(listOf(1f, 2f), listOf(0, 1), 1))
        assertEquals(listOf(3f, 4f, 3f, 4f), OutputDecoder.dequantize(byteArrayOf(3, 3, 3, 3), perChannel).toList())
        assertFailsWith<IllegalArgumentException> { OutputDecoder.dequantize(byteArrayOf(1), int16) }
    }
}
