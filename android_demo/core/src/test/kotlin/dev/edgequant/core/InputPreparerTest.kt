package dev.edgequant.core

import kotlin.test.Test
import kotlin.test.assertContentEquals
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith

class InputPreparerTest {
    @Test
    fun scalesThenNormalizesPerChannelInNhwc() {
        val input = TensorSpec("x", listOf(1, 1, 2, 3), DType.FLOAT32, null)
        val pre = Preprocess(0.5f, listOf(1f, 2f, 3f), listOf(1f, 2f, 4f), Layout.NHWC)
        val raw = floatArrayOf(2f, 4f, 6f, 4f, 8f, 12f) // pixel 0: (2,4,6), pixel 1: (4,8,12)
        val x = InputPreparer(input, pre).normalize(raw)
        assertContentEquals(floatArrayOf(0f, 0f, 0f, 1f, 1f, 0.75f), x)
    }

    @Test
    fun inNchwTheChannelIsTheSecondDimension() {
        val input = TensorSpec("x", listOf(1, 2, 1, 2), DType.FLOAT32, null)
        val pre = Preprocess(1f, listOf(10f, 20f), listOf(1f, 1f), Layout.NCHW)
        val x = InputPreparer(input, pre).normalize(floatArrayOf(10f, 11f, 20f, 22f))
        assertContentEquals(floatArrayOf(0f, 1f, 0f, 2f), x)
    }

    @Test
    fun quantizedInputBytesFollowTheRoundingRule() {
        val input = TensorSpec("x", listOf(1, 4), DType.INT8, QuantParams(listOf(1f / 255f), listOf(-128), 0))
        val pre = Preprocess(1f / 255f, listOf(0f), listOf(1f), Layout.NHWC)
        val bytes = InputPreparer(input, pre).prepare(floatArrayOf(0f, 1f, 128f, 255f))
        assertContentEquals(byteArrayOf(-128, -127, 0, 127), bytes)
    }

    @Test
    fun float32InputsAreWrittenLittleEndian() {
        val input = TensorSpec("x", listOf(2), DType.FLOAT32, null)
        val bytes = InputPreparer(input, Preprocess.IDENTITY).prepare(floatArrayOf(1f, -2f))
        assertContentEquals(byteArrayOf(0, 0, 0x80.toByte(), 0x3f, 0, 0, 0, 0xc0.toByte()), bytes)
    }

    @Test
    fun rejectsASampleOfTheWrongSizeOrMismatchedChannels() {
        val input = TensorSpec("x", listOf(1, 2, 2, 3), DType.FLOAT32, null)
        val e = assertFailsWith<IllegalArgumentException> { InputPreparer(input, Preprocess.IDENTITY).prepare(FloatArray(5)) }
        assertEquals("a sample has 5 values; input x [1, 2, 2, 3] needs 12", e.message)
        assertFailsWith<IllegalArgumentException> { InputPreparer(input, Preprocess(1f, listOf(0f, 0f), listOf(1f), Layout.NHWC)) }
    }
}
