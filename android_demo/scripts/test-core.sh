#!/usr/bin/env bash
# Compile the app's plain-Kotlin core with kotlinc and run its unit tests (JUnit 4), no Gradle, no Android SDK.
#
#   android_demo/scripts/test-core.sh [OUT_DIR]
#
# Leaves the compiled classes in OUT_DIR/classes (tests/test_android_logic.py runs CoreCli from there
# with kotlin-stdlib.jar and org.json). OUT_DIR defaults to android_demo/build/kotlinc.
# Installs nothing. It needs:
#   KOTLINC      kotlinc from the npm package kotlin-compiler
#                (default: ~/.cache/edgequant/kotlin/node_modules/kotlin-compiler/bin/kotlinc), set up with
#                npm install --prefix ~/.cache/edgequant/kotlin --no-audit --no-fund kotlin-compiler@2.4.20
#   JUNIT_JAR    JUnit 4 (default /usr/share/java/junit4.jar, Debian package junit4)
#   HAMCREST_JAR (default /usr/share/java/hamcrest-core.jar, pulled in by junit4)
#   JSON_JAR     org.json, Android's implementation (default /usr/share/java/com.android.json.jar,
#                Debian package libandroid-json-java); on a phone it is part of Android
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KOTLINC="${KOTLINC:-$HOME/.cache/edgequant/kotlin/node_modules/kotlin-compiler/bin/kotlinc}"
JUNIT_JAR="${JUNIT_JAR:-/usr/share/java/junit4.jar}"
HAMCREST_JAR="${HAMCREST_JAR:-/usr/share/java/hamcrest-core.jar}"
JSON_JAR="${JSON_JAR:-/usr/share/java/com.android.json.jar}"
out="${1:-$here/build/kotlinc}"

missing() { echo "test-core.sh: $1" >&2; exit 2; }
[ -x "$KOTLINC" ] || missing "kotlinc not found at $KOTLINC (npm install --prefix ~/.cache/edgequant/kotlin kotlin-compiler@2.4.20, or set KOTLINC)"
[ -f "$JUNIT_JAR" ] || missing "JUnit 4 not found at $JUNIT_JAR (apt-get install junit4, or set JUNIT_JAR)"
[ -f "$HAMCREST_JAR" ] || missing "hamcrest not found at $HAMCREST_JAR (apt-get install junit4, or set HAMCREST_JAR)"
[ -f "$JSON_JAR" ] || missing "org.json not found at $JSON_JAR (apt-get install libandroid-json-java, or set JSON_JAR)"
command -v java >/dev/null || missing "java not found on PATH (a JDK 17 runs kotlinc)"

lib="$(cd "$(dirname "$(readlink -f "$KOTLINC")")/../lib" && pwd)"
mkdir -p "$out"
# kotlinc's own JVM: a small heap is enough and leaves memory to the rest of the test suite.
export JAVA_OPTS="${JAVA_OPTS:--Xmx1g}"

test_libs="$lib/kotlin-test.jar:$lib/kotlin-test-junit.jar:$JUNIT_JAR:$HAMCREST_JAR"
# One kotlinc run for the core and its tests: each run pays ~15 s of compiler start-up.
rm -rf "$out/classes"
"$KOTLINC" -nowarn -jvm-target 17 -cp "$test_libs:$JSON_JAR" -d "$out/classes" "$here/core/src/main/kotlin" "$here/core/src/test/kotlin"

classes=$(cd "$out/classes" && find . -name '*Test.class' ! -name '*$*' | sed 's#^\./##; s/\.class$//; s#/#.#g' | sort)
[ -n "$classes" ] || missing "no test classes compiled"
# shellcheck disable=SC2086  # one argument per test class
java -cp "$out/classes:$test_libs:$JSON_JAR:$lib/kotlin-stdlib.jar" org.junit.runner.JUnitCore $classes
