"""Push a built .tflite to the Android demo app (android_demo/) and read back what it measured.

- `app_manifest`: the one manifest format the app reads (tensors, quantization, labels, preprocessing).
- `samples`: sample inputs from an .npz, as the raw binary file the app reads.
- `app_logic`: the app's input/output arithmetic in Python (the Kotlin core in android_demo/core mirrors it).
- `adb`: the `adb` command, called with argument lists, with one-line errors.
- `push`: stage, push, verify by SHA-256 on the device, and optionally run the app and pull its result.
"""

from edgequant.android.device_paths import ACTIVITY, APP_ID, DEVICE_DIR

__all__ = ["ACTIVITY", "APP_ID", "DEVICE_DIR"]
