package dev.edgequant.demo

import android.os.Build
import dev.edgequant.core.AppManifest
import dev.edgequant.core.RunConfig
import dev.edgequant.core.TensorCheck
import org.tensorflow.lite.Delegate
import org.tensorflow.lite.Interpreter
import org.tensorflow.lite.gpu.CompatibilityList
import org.tensorflow.lite.gpu.GpuDelegate
import org.tensorflow.lite.nnapi.NnApiDelegate
import java.io.File
import java.io.FileInputStream
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.nio.channels.FileChannel
import java.util.IdentityHashMap

/** A delegate this device cannot use; the message says why. */
class DelegateUnavailable(message: String) : Exception(message)

/**
 * The LiteRT interpreter for one model and one delegate: the only code here that touches LiteRT.
 * CPU runs with XNNPACK and [RunConfig.threads] threads; GPU and NNAPI when the device has them.
 */
class LiteRtRunner(modelFile: File, private val manifest: AppManifest, config: RunConfig) : AutoCloseable {
    private val delegate: Delegate?
    private val interpreter: Interpreter
    private val inputBuffers = IdentityHashMap<ByteArray, ByteBuffer>()
    private val outputBuffers: Map<Int, ByteBuffer>
    private val outputBytes: ByteArray

    init {
        val options = Interpreter.Options().setNumThreads(config.threads)
        delegate = when (config.delegate) {
            "cpu" -> { options.setUseXNNPACK(true); null }
            "gpu" -> {
                val compatibility = CompatibilityList()
                try {
                    if (!compatibility.isDelegateSupportedOnThisDevice) {
                        throw DelegateUnavailable("the GPU delegate does not support this device's GPU")
                    }
                    GpuDelegate(compatibility.bestOptionsForThisDevice)
                } finally {
                    compatibility.close()
                }
            }
            "nnapi" -> {
                if (Build.VERSION.SDK_INT < Build.VERSION_CODES.P) throw DelegateUnavailable("NNAPI needs Android 9 or newer")
                NnApiDelegate()
            }
            else -> throw DelegateUnavailable("unknown delegate ${config.delegate}")
        }
        delegate?.let { options.addDelegate(it) }
        interpreter = try {
            Interpreter(mapFile(modelFile), options)
        } catch (e: Exception) {
            (delegate as? AutoCloseable)?.close()
            throw e
        }
        try {
            check(interpreter.inputTensorCount == 1) { "the demo app feeds single-input models; this one has ${interpreter.inputTensorCount} inputs" }
            val tensor = interpreter.getInputTensor(0)
            val q = tensor.quantizationParams()
            TensorCheck.mismatch(manifest.inputs[0], tensor.dataType().name, tensor.shape(), q.scale, q.zeroPoint)?.let { error(it) }
            val out = interpreter.getOutputTensor(0)
            val oq = out.quantizationParams()
            TensorCheck.mismatch(manifest.outputs[0], out.dataType().name, out.shape(), oq.scale, oq.zeroPoint)?.let { error(it) }
            outputBuffers = (0 until interpreter.outputTensorCount).associateWith {
                ByteBuffer.allocateDirect(interpreter.getOutputTensor(it).numBytes()).order(ByteOrder.nativeOrder())
            }
            outputBytes = ByteArray(out.numBytes())
        } catch (e: Exception) {
            close()
            throw e
        }
    }

    /**
     * One inference on [input] (the input tensor's bytes); returns the first output's bytes.
     * The returned array is reused: it is valid until the next call.
     */
    fun invoke(input: ByteArray): ByteArray {
        val inBuf = inputBuffers.getOrPut(input) {
            ByteBuffer.allocateDirect(input.size).order(ByteOrder.nativeOrder()).apply { put(input) }
        }
        inBuf.rewind()
        outputBuffers.values.forEach { it.rewind() }
        interpreter.runForMultipleInputsOutputs(arrayOf<Any>(inBuf), outputBuffers)
        val out = outputBuffers.getValue(0)
        out.rewind()
        out.get(outputBytes)
        return outputBytes
    }

    override fun close() {
        interpreter.close()
        (delegate as? AutoCloseable)?.close()
    }

    private fun mapFile(file: File): ByteBuffer = FileInputStream(file).use { stream ->
        stream.channel.map(FileChannel.MapMode.READ_ONLY, 0, stream.channel.size())
    }
}
