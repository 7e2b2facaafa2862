package dev.edgequant.demo

import android.app.Activity
import android.os.Build
import android.os.Bundle
import android.util.Log
import android.widget.ArrayAdapter
import android.widget.Button
import android.widget.EditText
import android.widget.Spinner
import android.widget.TextView
import dev.edgequant.core.ChosenInputs
import dev.edgequant.core.DemoRun
import dev.edgequant.core.InputChooser
import dev.edgequant.core.RunConfig
import dev.edgequant.core.RunResult
import dev.edgequant.core.runConfigOf
import java.time.Instant
import java.util.concurrent.ExecutorService
import java.util.concurrent.Executors

/**
 * One screen: the pushed model, the delegate and run settings, a Run button, the results.
 * Everything but the interpreter calls lives in the plain-Kotlin core (dev.edgequant.core).
 *
 * Started by `edgequant push --run` as
 *   am start -S -n dev.edgequant.demo/.MainActivity --ez autorun true --es delegate cpu --ei threads 4
 *       --ei warmup 5 --ei runs 50 --ei topk 3 --es run_id <id>
 * it runs at once and writes result.json without user input. `--ez init_only true` only creates the
 * app's files folder (so that the app, not adb, owns it) and closes.
 */
class MainActivity : Activity() {
    private val worker: ExecutorService = Executors.newSingleThreadExecutor()
    private lateinit var files: DemoFiles
    private lateinit var status: TextView
    private lateinit var results: TextView
    private lateinit var runButton: Button
    private lateinit var delegateSpinner: Spinner

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        files = DemoFiles(getExternalFilesDir(null) ?: filesDir)
        if (intent.getBooleanExtra("init_only", false)) {
            finish()
            return
        }
        setContentView(R.layout.activity_main)
        status = findViewById(R.id.model_status)
        results = findViewById(R.id.results)
        runButton = findViewById(R.id.run)
        delegateSpinner = findViewById(R.id.delegate)
        delegateSpinner.adapter = ArrayAdapter(this, android.R.layout.simple_spinner_dropdown_item, DELEGATES)
        runButton.setOnClickListener { startRun(configFromScreen(), runId = null) }
        findViewById<Button>(R.id.reload).setOnClickListener { showModel() }
        showModel()

        // Only on a fresh start: a rotation re-creates the activity with the same intent.
        if (savedInstanceState == null && intent.getBooleanExtra("autorun", false)) {
            val extras = intent.extras
            val config = try {
                runConfigOf({ extras?.getString(it) }, { key -> extras?.takeIf { it.containsKey(key) }?.getInt(key) })
            } catch (e: IllegalArgumentException) {
                writeError("bad intent extras: ${e.message}", intent.getStringExtra("run_id"))
                return
            }
            delegateSpinner.setSelection(DELEGATES.indexOf(config.delegate))
            startRun(config, intent.getStringExtra("run_id"))
        }
    }

    override fun onDestroy() {
        worker.shutdownNow()
        super.onDestroy()
    }

    private fun showModel() {
        status.text = try {
            val m = files.manifest()
            if (m == null) {
                "No model yet. From a computer:\n  edgequant push build/<recipe>/<variant>.tflite\nFiles go to ${files.dir}"
            } else {
                val input = m.inputs[0]
                val q = input.quant?.let { " scale ${it.scale} zero point ${it.zeroPoint}" } ?: ""
                "${m.model.name} (${m.model.mode}, ${m.model.sizeBytes} bytes)\n" +
                    "input ${input.shape} ${input.dtype.jsonName}$q\n" +
                    "samples: ${m.samples?.let { "${it.count} pushed" } ?: "bundled if they fit, else synthetic"}\n" +
                    "sha256 ${m.model.sha256.take(16)}…"
            }
        } catch (e: Exception) {
            "Cannot read ${files.manifestFile}: ${e.message}"
        }
    }

    private fun configFromScreen(): RunConfig {
        fun number(id: Int, default: Int) = findViewById<EditText>(id).text.toString().toIntOrNull() ?: default
        val delegate = DELEGATES[delegateSpinner.selectedItemPosition.coerceAtLeast(0)]
        return RunConfig(
            delegate = delegate,
            threads = number(R.id.threads, 1).coerceAtLeast(1),
            xnnpack = delegate == "cpu",
            warmupRuns = number(R.id.warmup, 5).coerceAtLeast(0),
            timedRuns = number(R.id.runs, 50).coerceAtLeast(1),
        )
    }

    private fun startRun(config: RunConfig, runId: String?) {
        runButton.isEnabled = false
        results.text = "running: ${config.delegate}, ${config.threads} thread(s)…"
        worker.execute {
            val text = try {
                val (result, file) = runOnce(config, runId)
                describe(result) + "\nsaved to $file"
            } catch (e: Exception) {
                Log.e(TAG, "run failed", e)
                writeError(e.message ?: e.toString(), runId)
                "failed: ${e.message}"
            }
            runOnUiThread {
                results.text = text
                runButton.isEnabled = true
            }
        }
    }

    private fun runOnce(config: RunConfig, runId: String?): Pair<RunResult, java.io.File> {
        val manifest = files.manifest() ?: error("no app_manifest.json in ${files.dir}: run `edgequant push` first")
        val chosen: ChosenInputs = InputChooser.choose(
            manifest,
            readPushed = files::read,
            bundledJson = assetText(InputChooser.BUNDLED_JSON),
            readBundled = { name -> assets.open("bundled/$name").use { it.readBytes() } },
        )
        val modelFile = files.model(manifest)
        val sha = modelFile.inputStream().use { dev.edgequant.core.Sha256.hex(it) }
        check(sha == manifest.model.sha256) { "${modelFile.name}: sha256 $sha is not the manifest's ${manifest.model.sha256}" }
        val result = LiteRtRunner(modelFile, chosen.manifest, config).use { runner ->
            DemoRun(chosen.manifest, chosen.samples, chosen.source).run(config, runner::invoke) { Log.i(TAG, it) }
        }
        val file = files.writeResult(result.toMap(extra(runId)))
        Log.i(TAG, "wrote $file")
        return result to file
    }

    private fun writeError(message: String, runId: String?) {
        try {
            val model = runCatching { files.manifest()?.model }.getOrNull()
            val extra = extra(runId) + mapOf("model" to model?.let { mapOf("file" to it.file, "name" to it.name, "sha256" to it.sha256) })
            files.writeResult(RunResult.errorMap(message, extra))
        } catch (e: Exception) {
            Log.e(TAG, "cannot write the error result", e)
        }
    }

    /** What only the Android layer knows: the device, the app, the time, the caller's run id. */
    private fun extra(runId: String?): Map<String, Any?> = linkedMapOf(
        "run_id" to runId,
        "finished_at" to Instant.now().toString(),
        "app_version" to packageManager.getPackageInfo(packageName, 0).versionName,
        "device" to linkedMapOf(
            "manufacturer" to Build.MANUFACTURER,
            "model" to Build.MODEL,
            "android" to Build.VERSION.RELEASE,
            "sdk" to Build.VERSION.SDK_INT,
            "abi" to Build.SUPPORTED_ABIS.firstOrNull(),
            "soc" to if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.S) Build.SOC_MODEL else null,
        ),
    )

    private fun assetText(path: String): String? =
        try { assets.open(path).use { it.readBytes().toString(Charsets.UTF_8) } } catch (e: java.io.IOException) { null }

    private fun describe(r: RunResult): String = buildString {
        val l = r.latency
        append("${r.config.delegate}, ${r.config.threads} thread(s), inputs ${r.inputSource.jsonName}\n")
        append("latency over ${l.runs} runs (after ${r.config.warmupRuns} warm-up):\n")
        append("  mean %.3f ms  median %.3f ms  p90 %.3f ms\n".format(l.meanMs, l.medianMs, l.p90Ms))
        append("  min %.3f ms  max %.3f ms\n".format(l.minMs, l.maxMs))
        if (r.labelled > 0) append("top-1 accuracy: ${r.top1Correct}/${r.labelled}\n")
        for (p in r.predictions.take(MAX_SHOWN)) {
            val expected = p.expected?.let { " (expected ${r.manifest.label(it)})" } ?: ""
            append("#${p.sample}$expected: ")
            append(p.top.joinToString("  ") { "${r.manifest.label(it.index)} %.3f".format(it.score) })
            append('\n')
        }
        if (r.predictions.size > MAX_SHOWN) append("… ${r.predictions.size - MAX_SHOWN} more in result.json\n")
    }

    companion object {
        private const val TAG = "EdgequantDemo"
        private const val MAX_SHOWN = 20
        private val DELEGATES = listOf("cpu", "gpu", "nnapi")
    }
}
