package dev.edgequant.core

import java.security.MessageDigest

/** Sample inputs: raw values (as float32, exact for uint8/int8/int16) and optional class labels. */
class Samples(val spec: SamplesSpec, private val data: ByteArray, val origin: String) {
    val count get() = spec.count
    private val perSample: Int = spec.shape.drop(1).fold(1) { a, d -> a * d }

    init {
        if (data.size.toLong() != spec.byteSize) {
            throw ManifestException("$origin: ${data.size} bytes, but samples ${spec.shape} ${spec.dtype.jsonName} need ${spec.byteSize}")
        }
    }

    /** Sample [i]'s values in C order, converted to float32. */
    fun raw(i: Int): FloatArray {
        require(i in 0 until count) { "sample $i out of range 0..${count - 1}" }
        val base = i * perSample
        return FloatArray(perSample) { j ->
            val k = base + j
            when (spec.dtype) {
                DType.FLOAT32 -> java.lang.Float.intBitsToFloat(LittleEndian.getInt(data, 4 * k))
                else -> LittleEndian.getInteger(data, k, spec.dtype).toFloat()
            }
        }
    }

    fun label(i: Int): Int? = spec.labels?.get(i)

    companion object {
        /** Check the file's SHA-256 against the manifest before using it. */
        fun verified(spec: SamplesSpec, data: ByteArray, origin: String): Samples {
            val actual = Sha256.hex(data)
            if (actual != spec.sha256) throw ManifestException("$origin: sha256 $actual does not match the manifest's ${spec.sha256}")
            return Samples(spec, data, origin)
        }
    }
}

object Sha256 {
    fun hex(data: ByteArray): String = MessageDigest.getInstance("SHA-256").digest(data).joinToString("") { "%02x".format(it) }

    fun hex(stream: java.io.InputStream): String {
        val md = MessageDigest.getInstance("SHA-256")
        val buf = ByteArray(1 shl 16)
        while (true) {
            val n = stream.read(buf)
            if (n < 0) break
            md.update(buf, 0, n)
        }
        return md.digest().joinToString("") { "%02x".format(it) }
    }
}
