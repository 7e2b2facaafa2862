"""Where the demo app lives on the device, and the fixed file names it reads and writes.

These names are part of the app's contract: android_demo/app/src/main/kotlin/dev/edgequant/demo/DemoFiles.kt
uses the same ones.
"""

APP_ID = "dev.edgequant.demo"
ACTIVITY = f"{APP_ID}/.MainActivity"
# The app's external files dir (Context.getExternalFilesDir(null)): the adb shell user may write there.
DEVICE_DIR = f"/sdcard/Android/data/{APP_ID}/files/edgequant"

MODEL_FILE = "model.tflite"
MANIFEST_FILE = "app_manifest.json"
SAMPLES_FILE = "samples.bin"
RESULT_FILE = "result.json"
