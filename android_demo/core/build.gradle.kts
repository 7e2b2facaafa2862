// Plain Kotlin/JVM: the app's logic (manifest, inputs, quantization, top-k, latency statistics).
// CI compiles and tests the same sources without Gradle: scripts/test-core.sh.
plugins {
    alias(libs.plugins.kotlin.jvm)
}

kotlin {
    jvmToolchain(17)
}

dependencies {
    testImplementation(kotlin("test-junit"))
    testImplementation(libs.junit)
}
