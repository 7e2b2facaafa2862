package dev.edgequant.core

/** One ranked class: its index in the output, its float32 score. */
data class Ranked(val index: Int, val score: Float)

object TopK {
    /**
     * The [k] highest scores, highest first; equal scores keep the lower index first, and NaN ranks last.
     * Same order as Python's `np.argsort(-scores, kind="stable")[:k]` (edgequant.android.app_logic.top_k).
     */
    fun of(scores: FloatArray, k: Int): List<Ranked> {
        require(k > 0) { "k must be positive, got $k" }
        val order = (scores.indices).sortedWith { a, b -> compare(scores, a, b) }
        return order.take(k).map { Ranked(it, scores[it]) }
    }

    // Primitive comparisons, so that 0.0 and -0.0 tie as they do in NumPy (Float.compareTo would not).
    private fun compare(s: FloatArray, a: Int, b: Int): Int {
        val x = s[a]
        val y = s[b]
        val xNaN = x.isNaN()
        val yNaN = y.isNaN()
        return when {
            xNaN && yNaN -> a.compareTo(b)
            xNaN -> 1
            yNaN -> -1
            x > y -> -1
            x < y -> 1
            else -> a.compareTo(b)
        }
    }
}

/**
 * Latency over the timed runs (warm-up runs excluded), in milliseconds.
 * Percentiles interpolate linearly between ranks, as `numpy.percentile`'s default; std is the population one.
 */
data class LatencyStats(
    val runs: Int,
    val meanMs: Double,
    val medianMs: Double,
    val p90Ms: Double,
    val minMs: Double,
    val maxMs: Double,
    val stdMs: Double,
) {
    fun toMap(): Map<String, Any?> = linkedMapOf(
        "runs" to runs, "mean_ms" to meanMs, "median_ms" to medianMs, "p90_ms" to p90Ms,
        "min_ms" to minMs, "max_ms" to maxMs, "std_ms" to stdMs,
    )

    companion object {
        fun ofNanos(nanos: LongArray): LatencyStats = ofMillis(DoubleArray(nanos.size) { nanos[it] / 1e6 })

        fun ofMillis(ms: DoubleArray): LatencyStats {
            require(ms.isNotEmpty()) { "no timed runs" }
            val sorted = ms.sortedArray()
            val mean = ms.sum() / ms.size
            val variance = ms.sumOf { (it - mean) * (it - mean) } / ms.size
            return LatencyStats(
                runs = ms.size,
                meanMs = mean,
                medianMs = percentile(sorted, 50.0),
                p90Ms = percentile(sorted, 90.0),
                minMs = sorted.first(),
                maxMs = sorted.last(),
                stdMs = Math.sqrt(variance),
            )
        }

        /** numpy.percentile(..., method="linear") of already sorted values. */
        fun percentile(sorted: DoubleArray, q: Double): Double {
            require(q in 0.0..100.0) { "percentile $q out of 0..100" }
            val pos = (sorted.size - 1) * q / 100.0
            val lo = Math.floor(pos).toInt()
            val hi = Math.min(lo + 1, sorted.size - 1)
            val frac = pos - lo
            return sorted[lo] + (sorted[hi] - sorted[lo]) * frac
        }
    }
}
