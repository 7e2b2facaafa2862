package dev.edgequant.core

import kotlin.test.Test
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith

class StatsTest {
    @Test
    fun topKBreaksTiesByLowerIndex() {
        val top = TopK.of(floatArrayOf(0.1f, 0.5f, 0.2f, 0.5f, 0.2f), 4)
        assertEquals(listOf(1, 3, 2, 4), top.map { it.index })
        assertEquals(listOf(0.5f, 0.5f, 0.2f, 0.2f), top.map { it.score })
    }

    @Test
    fun topKRanksNanLastAndTiesSignedZeros() {
        assertEquals(listOf(2, 0, 3, 1), TopK.of(floatArrayOf(0f, Float.NaN, 1f, -0f), 4).map { it.index })
        assertEquals(listOf(0, 1), TopK.of(floatArrayOf(-0f, 0f), 2).map { it.index })
        assertEquals(2, TopK.of(floatArrayOf(1f, 2f), 5).size)
    }

    @Test
    fun latencyStatsMatchNumpy() {
        // numpy: mean 5.5, median 5.5, percentile(.., 90) = 9.1, std (ddof=0) = sqrt(8.25)
        val s = LatencyStats.ofMillis(doubleArrayOf(10.0, 1.0, 9.0, 2.0, 8.0, 3.0, 7.0, 4.0, 6.0, 5.0))
        assertEquals(10, s.runs)
        assertEquals(5.5, s.meanMs, 1e-12)
        assertEquals(5.5, s.medianMs, 1e-12)
        assertEquals(9.1, s.p90Ms, 1e-12)
        assertEquals(1.0, s.minMs)
        assertEquals(10.0, s.maxMs)
        assertEquals(Math.sqrt(8.25), s.stdMs, 1e-12)
    }

    @Test
    fun oneRunAndNanosecondInput() {
        val s = LatencyStats.ofNanos(longArrayOf(2_500_000))
        assertEquals(listOf(2.5, 2.5, 2.5, 0.0), listOf(s.meanMs, s.medianMs, s.p90Ms, s.stdMs))
        assertFailsWith<IllegalArgumentException> { LatencyStats.ofMillis(DoubleArray(0)) }
    }
}
