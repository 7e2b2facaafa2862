package dev.edgequant.demo

import dev.edgequant.core.AppManifest
import dev.edgequant.core.Json
import dev.edgequant.core.ManifestException
import dev.edgequant.core.RunResult
import java.io.File

/**
 * The app's folder that `edgequant push` fills: <external files dir>/edgequant/.
 * On the device: /sdcard/Android/data/dev.edgequant.demo/files/edgequant/ (edgequant/android/device_paths.py).
 */
class DemoFiles(externalFilesDir: File) {
    val dir = File(externalFilesDir, "edgequant").apply { mkdirs() }
    val manifestFile = File(dir, AppManifest.FILE_NAME)
    val resultFile = File(dir, RunResult.FILE_NAME)

    /** The pushed manifest, or null when nothing was pushed yet. */
    fun manifest(): AppManifest? {
        if (!manifestFile.isFile) return null
        return AppManifest.parse(manifestFile.readText(), manifestFile.path)
    }

    fun model(manifest: AppManifest): File {
        val file = File(dir, manifest.model.file)
        if (!file.isFile) throw ManifestException("${file.path}: missing; push the model again")
        return file
    }

    /** A file beside the manifest, or null when it is not there. */
    fun read(name: String): ByteArray? = File(dir, name).takeIf { it.isFile }?.readBytes()

    /** Write result.json via a temporary file and a rename, so `adb pull` never gets half a file. */
    fun writeResult(result: Map<String, Any?>): File {
        val tmp = File(dir, "${RunResult.FILE_NAME}.tmp")
        tmp.writeText(Json.write(result))
        if (!tmp.renameTo(resultFile)) throw java.io.IOException("cannot rename ${tmp.path} to ${resultFile.path}")
        return resultFile
    }
}
