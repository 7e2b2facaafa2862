package dev.edgequant.core

/**
 * The app manifest that `edgequant push` writes beside the model (`app_manifest.json`).
 *
 * One format, version 1, written by Python (edgequant/android/app_manifest.py) and read here.
 * Its JSON Schema is edgequant/android/app_manifest.schema.json; android_demo/README.md shows an example.
 */
data class AppManifest(
    val version: Int,
    val createdBy: String,
    val model: ModelInfo,
    val inputs: List<TensorSpec>,
    val outputs: List<TensorSpec>,
    val labels: List<String>,
    val preprocess: Preprocess,
    val samples: SamplesSpec?,
) {
    /** The label of output class [index], or "class <index>" when the manifest has no labels. */
    fun label(index: Int): String = labels.getOrNull(index) ?: "class $index"

    companion object {
        const val FORMAT = "edgequant-app-manifest"
        const val VERSION = 1
        const val FILE_NAME = "app_manifest.json"

        /** Parse and check a manifest; [origin] names the file in error messages. */
        fun parse(text: String, origin: String = FILE_NAME): AppManifest {
            val root = JsonObject.parse(text, origin)
            val format = root.string("format")
            if (format != FORMAT) root.fail("format", "expected \"$FORMAT\", got \"$format\"")
            val version = root.int("version")
            if (version != VERSION) root.fail("version", "this app reads version $VERSION; got $version (update the app or edgequant)")
            val rounding = root.string("quantization_rounding")
            if (rounding != Quantization.ROUNDING) {
                root.fail("quantization_rounding", "this app rounds ${Quantization.ROUNDING}; got \"$rounding\"")
            }
            val inputs = root.objects("inputs").map(TensorSpec::parse)
            val outputs = root.objects("outputs").map(TensorSpec::parse)
            if (inputs.isEmpty()) root.fail("inputs", "the model has no inputs")
            if (outputs.isEmpty()) root.fail("outputs", "the model has no outputs")
            val manifest = AppManifest(
                version = version,
                createdBy = root.stringOrNull("created_by") ?: "",
                model = ModelInfo.parse(root.obj("model")),
                inputs = inputs,
                outputs = outputs,
                labels = root.strings("labels"),
                preprocess = Preprocess.parse(root.obj("preprocess")),
                samples = root.objOrNull("samples")?.let(SamplesSpec::parse),
            )
            manifest.samples?.let { s ->
                val perSample = s.shape.drop(1).fold(1L) { a, d -> a * d }
                if (perSample != inputs[0].elementCount) {
                    root.fail("samples.shape", "${s.shape} holds $perSample values per sample; input ${inputs[0].name} needs ${inputs[0].elementCount}")
                }
            }
            return manifest
        }
    }
}

data class ModelInfo(val file: String, val name: String, val mode: String, val sizeBytes: Long, val sha256: String) {
    companion object {
        fun parse(o: JsonObject): ModelInfo {
            val sha = o.string("sha256").lowercase()
            if (!Regex("[0-9a-f]{64}").matches(sha)) o.fail("sha256", "expected 64 hex digits")
            val file = o.string("file")
            if (file.contains('/') || file.startsWith(".")) o.fail("file", "expected a plain file name in the manifest's folder")
            return ModelInfo(file, o.stringOrNull("name") ?: file, o.stringOrNull("mode") ?: "unknown", o.long("size_bytes"), sha)
        }
    }
}

/** Element types the app reads and writes, with their size in bytes (little-endian on every Android ABI). */
enum class DType(val jsonName: String, val byteSize: Int, val minValue: Int, val maxValue: Int) {
    FLOAT32("float32", 4, 0, 0),
    INT8("int8", 1, -128, 127),
    UINT8("uint8", 1, 0, 255),
    INT16("int16", 2, -32768, 32767),
    INT32("int32", 4, Int.MIN_VALUE, Int.MAX_VALUE);

    val isInteger get() = this != FLOAT32

    companion object {
        fun of(name: String): DType? = entries.firstOrNull { it.jsonName == name }
    }
}

/** Affine quantization of a tensor: real = scale * (q - zero_point); per tensor unless [scales] has several. */
data class QuantParams(val scales: List<Float>, val zeroPoints: List<Int>, val axis: Int) {
    val perTensor get() = scales.size == 1
    val scale get() = scales[0]
    val zeroPoint get() = zeroPoints[0]
}

data class TensorSpec(val name: String, val shape: List<Int>, val dtype: DType, val quant: QuantParams?) {
    val elementCount: Long get() = shape.fold(1L) { a, d -> a * d }
    val byteSize: Long get() = elementCount * dtype.byteSize

    companion object {
        fun parse(o: JsonObject): TensorSpec {
            val dtypeName = o.string("dtype")
            val dtype = DType.of(dtypeName)
                ?: o.fail("dtype", "\"$dtypeName\" is not supported (supported: ${DType.entries.joinToString { it.jsonName }})")
            val shape = o.ints("shape")
            if (shape.any { it <= 0 }) o.fail("shape", "$shape has a dynamic or empty dimension; the app needs a static shape")
            val quant = o.objOrNull("quantization")?.let { q ->
                // Stored as float32 in the .tflite; JSON carries its exact value, so this is lossless.
                val scales = q.doubles("scale").map { it.toFloat() }
                val zps = q.ints("zero_point")
                if (scales.isEmpty() || scales.size != zps.size) q.fail("scale", "needs one zero_point per scale")
                QuantParams(scales, zps, if (q.has("axis")) q.int("axis") else 0)
            }
            return TensorSpec(o.string("name"), shape, dtype, quant)
        }
    }
}

enum class Layout { NHWC, NCHW }

/**
 * How a raw sample becomes a model input, in float32 arithmetic, in this order:
 * x = float32(raw); x = x * scale; x = (x - mean[c]) / std[c]  (c = channel of the element).
 * The samples are already at the model's input size and layout; the app does not resize.
 */
data class Preprocess(val scale: Float, val mean: List<Float>, val std: List<Float>, val layout: Layout) {
    companion object {
        val IDENTITY = Preprocess(1f, listOf(0f), listOf(1f), Layout.NHWC)

        fun parse(o: JsonObject): Preprocess {
            val mean = o.doubles("mean").map { it.toFloat() }
            val std = o.doubles("std").map { it.toFloat() }
            if (mean.isEmpty()) o.fail("mean", "expected at least one value")
            if (std.isEmpty() || std.any { !(it > 0f) }) o.fail("std", "expected positive values")
            val layout = when (val l = o.string("layout")) {
                "nhwc" -> Layout.NHWC
                "nchw" -> Layout.NCHW
                else -> o.fail("layout", "expected \"nhwc\" or \"nchw\", got \"$l\"")
            }
            return Preprocess(o.double("scale").toFloat(), mean, std, layout)
        }
    }
}

/** Samples pushed with the model: raw little-endian values, C order, `shape[0]` samples. */
data class SamplesSpec(val file: String, val dtype: DType, val shape: List<Int>, val sha256: String, val labels: List<Int>?) {
    val count get() = shape[0]
    val byteSize: Long get() = shape.fold(1L) { a, d -> a * d } * dtype.byteSize

    companion object {
        fun parse(o: JsonObject): SamplesSpec {
            val dtypeName = o.string("dtype")
            val dtype = DType.of(dtypeName) ?: o.fail("dtype", "\"$dtypeName\" is not supported")
            if (dtype == DType.INT32) o.fail("dtype", "int32 samples are not supported")
            val shape = o.ints("shape")
            if (shape.size < 2 || shape.any { it <= 0 }) o.fail("shape", "expected [count, ...] with positive sizes, got $shape")
            val file = o.string("file")
            if (file.contains('/') || file.startsWith(".")) o.fail("file", "expected a plain file name in the manifest's folder")
            val labels = if (o.has("labels")) o.ints("labels") else null
            if (labels != null && labels.size != shape[0]) o.fail("labels", "${labels.size} labels for ${shape[0]} samples")
            return SamplesSpec(file, dtype, shape, o.string("sha256").lowercase(), labels)
        }
    }
}
