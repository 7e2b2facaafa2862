// Plain Kotlin/JVM: the app's logic (manifest, inputs, quantization, top-k, latency statistics).
// CI compiles and tests the same sources without Gradle: scripts/test-core.sh.
plugins {
    alias(libs.plugins.kotlin.jvm)
}

kotlin {
    jvmToolchain(17)
}

dependencies {
    compileOnly(libs.android.json) // org.json: part of Android itself, so not packaged into the app
    testImplementation(libs.android.json)
    testImplementation(kotlin("test-junit"))
    testImplementation(libs.junit)
}
