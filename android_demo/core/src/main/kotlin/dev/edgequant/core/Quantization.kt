package dev.edgequant.core

/**
 * Float <-> integer conversion for quantized input and output tensors.
 *
 * The rule is edgequant's (`edgequant.runtime.quantize_input`, i.e. `np.round(x / scale + zero_point)`):
 *   q = clamp(roundHalfToEven(x / scale + zero_point), dtype.min, dtype.max)
 * with the division and the addition in float32, as NumPy does for a float32 array.
 * Math.rint rounds half to even like np.round. Note that rint(x/s + zp) differs from rint(x/s) + zp
 * at ties when zp is odd, so the order of operations is part of the rule.
 */
object Quantization {
    const val ROUNDING = "half_to_even"

    /** One value into the integer range of [dtype]; [quant] null means a plain cast (truncation, as NumPy's astype). */
    fun quantize(x: Float, quant: QuantParams?, dtype: DType): Int {
        require(dtype.isInteger) { "quantize needs an integer dtype, got ${dtype.jsonName}" }
        if (x.isNaN()) throw IllegalArgumentException("cannot quantize NaN")
        val v: Double = if (quant == null || quant.scale == 0f) {
            x.toDouble().let { if (it < 0) Math.ceil(it) else Math.floor(it) }
        } else {
            val shifted: Float = x / quant.scale + quant.zeroPoint.toFloat() // float32 ops, like NumPy
            Math.rint(shifted.toDouble())
        }
        return v.coerceIn(dtype.minValue.toDouble(), dtype.maxValue.toDouble()).toInt()
    }

    /** An integer tensor value as float32: (q - zero_point) * scale, as `edgequant.runtime.dequantize_output`. */
    fun dequantize(q: Int, quant: QuantParams?): Float {
        if (quant == null || quant.scale == 0f) return q.toFloat()
        return (q.toFloat() - quant.zeroPoint.toFloat()) * quant.scale
    }
}

/** Turns one raw sample into the bytes of the model's first input tensor. */
class InputPreparer(private val input: TensorSpec, private val preprocess: Preprocess) {
    private val channels: Int
    private val innerSize: Long // elements per channel step: 1 for NHWC, H*W for NCHW

    init {
        val shape = input.shape
        when (preprocess.layout) {
            Layout.NHWC -> { channels = shape.last(); innerSize = 1 }
            Layout.NCHW -> {
                channels = if (shape.size >= 2) shape[1] else 1
                innerSize = shape.drop(2).fold(1L) { a, d -> a * d }
            }
        }
        for ((name, values) in listOf("mean" to preprocess.mean, "std" to preprocess.std)) {
            require(values.size == 1 || values.size == channels) {
                "preprocess.$name has ${values.size} values; input ${input.name} has $channels channels"
            }
        }
        if (input.quant != null) require(input.quant.perTensor) { "input ${input.name} has per-channel quantization; the app needs one scale" }
    }

    /** The preprocessed float32 values of [raw] (one sample, model layout, C order). */
    fun normalize(raw: FloatArray): FloatArray {
        require(raw.size.toLong() == input.elementCount) {
            "a sample has ${raw.size} values; input ${input.name} ${input.shape} needs ${input.elementCount}"
        }
        val scale = preprocess.scale
        val mean = preprocess.mean
        val std = preprocess.std
        return FloatArray(raw.size) { i ->
            val c = if (mean.size == 1 && std.size == 1) 0 else ((i / innerSize) % channels).toInt()
            val scaled: Float = raw[i] * scale
            (scaled - mean[if (mean.size == 1) 0 else c]) / std[if (std.size == 1) 0 else c]
        }
    }

    /** The input tensor's bytes, little-endian, ready for the interpreter. */
    fun prepare(raw: FloatArray): ByteArray {
        val x = normalize(raw)
        val out = ByteArray((x.size * input.dtype.byteSize))
        for (i in x.indices) {
            if (input.dtype == DType.FLOAT32) {
                LittleEndian.putInt(out, i * 4, java.lang.Float.floatToRawIntBits(x[i]))
            } else {
                LittleEndian.putInteger(out, i, input.dtype, Quantization.quantize(x[i], input.quant, input.dtype))
            }
        }
        return out
    }
}

/** Reads an output tensor's bytes back as float32 scores. */
object OutputDecoder {
    fun dequantize(bytes: ByteArray, output: TensorSpec): FloatArray {
        require(bytes.size.toLong() == output.byteSize) {
            "output ${output.name} has ${bytes.size} bytes; expected ${output.byteSize}"
        }
        val n = output.elementCount.toInt()
        if (output.dtype == DType.FLOAT32) {
            return FloatArray(n) { java.lang.Float.intBitsToFloat(LittleEndian.getInt(bytes, it * 4)) }
        }
        val q = output.quant
        if (q != null && !q.perTensor) {
            // Per-channel outputs: channel along q.axis.
            val inner = output.shape.drop(q.axis + 1).fold(1) { a, d -> a * d }
            val dim = output.shape[q.axis]
            return FloatArray(n) {
                val c = (it / inner) % dim
                Quantization.dequantize(LittleEndian.getInteger(bytes, it, output.dtype), QuantParams(listOf(q.scales[c]), listOf(q.zeroPoints[c]), 0))
            }
        }
        return FloatArray(n) { Quantization.dequantize(LittleEndian.getInteger(bytes, it, output.dtype), q) }
    }
}

internal object LittleEndian {
    fun putInt(b: ByteArray, off: Int, v: Int) {
        b[off] = v.toByte(); b[off + 1] = (v shr 8).toByte(); b[off + 2] = (v shr 16).toByte(); b[off + 3] = (v shr 24).toByte()
    }

    fun getInt(b: ByteArray, off: Int): Int =
        (b[off].toInt() and 0xff) or ((b[off + 1].toInt() and 0xff) shl 8) or
            ((b[off + 2].toInt() and 0xff) shl 16) or ((b[off + 3].toInt() and 0xff) shl 24)

    /** Element [i] of an integer array of [dtype]. */
    fun getInteger(b: ByteArray, i: Int, dtype: DType): Int = when (dtype) {
        DType.INT8 -> b[i].toInt()
        DType.UINT8 -> b[i].toInt() and 0xff
        DType.INT16 -> ((b[2 * i].toInt() and 0xff) or (b[2 * i + 1].toInt() shl 8)).toShort().toInt()
        DType.INT32 -> getInt(b, 4 * i)
        DType.FLOAT32 -> throw IllegalArgumentException("float32 is not an integer type")
    }

    fun putInteger(b: ByteArray, i: Int, dtype: DType, v: Int) {
        when (dtype) {
            DType.INT8, DType.UINT8 -> b[i] = v.toByte()
            DType.INT16 -> { b[2 * i] = v.toByte(); b[2 * i + 1] = (v shr 8).toByte() }
            DType.INT32 -> putInt(b, 4 * i, v)
            DType.FLOAT32 -> throw IllegalArgumentException("float32 is not an integer type")
        }
    }
}
