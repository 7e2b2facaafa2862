pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}
dependencyResolutionManagement {
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories {
        google()
        mavenCentral()
    }
}

rootProject.name = "edgequant-demo"
include(":core") // the app's logic in plain Kotlin/JVM: no Android imports, tested with kotlinc too
include(":app")  // the Android layer: Activity, LiteRT interpreter, layout
