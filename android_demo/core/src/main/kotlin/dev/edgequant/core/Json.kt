package dev.edgequant.core

import org.json.JSONArray
import org.json.JSONException
import org.json.JSONObject
import org.json.JSONTokener

/**
 * JSON through `org.json`: built into Android, and packaged for the JVM unit tests by Debian
 * (`libandroid-json-java`, the same Android implementation).
 *
 * Values map to Kotlin as: object -> Map<String, Any?> (insertion order kept), array -> List<Any?>,
 * string -> String, integer -> Long, other numbers -> Double, true/false -> Boolean, null -> null.
 */
object Json {
    fun parse(text: String): Any? = toKotlin(readValue(text))

    /** Compact JSON. Floats are written as their exact double value; NaN and infinities as null. */
    fun write(value: Any?): String = when (val json = toJson(value)) {
        JSONObject.NULL -> "null"
        is String -> JSONObject.quote(json)
        is Number -> JSONObject.numberToString(json)
        else -> json.toString()
    }

    /** One JSON value and nothing after it. */
    internal fun readValue(text: String): Any? {
        val tokener = JSONTokener(text)
        val value = try {
            tokener.nextValue()
        } catch (e: JSONException) {
            throw JsonException("invalid JSON: ${e.message}")
        }
        if (tokener.nextClean() != 0.toChar()) throw JsonException("invalid JSON: unexpected characters after the value")
        return value
    }

    private fun toKotlin(v: Any?): Any? = when (v) {
        null, JSONObject.NULL -> null
        is JSONObject -> v.keys().asSequence().associateWithTo(LinkedHashMap()) { toKotlin(v.opt(it)) }
        is JSONArray -> List(v.length()) { toKotlin(v.opt(it)) }
        is Int -> v.toLong()
        else -> v
    }

    private fun toJson(value: Any?): Any = when (value) {
        null -> JSONObject.NULL
        is String, is Boolean, is Int, is Long, is Short, is Byte -> value
        is Float -> toJson(value.toDouble())
        is Double -> if (value.isNaN() || value.isInfinite()) JSONObject.NULL else value
        is Map<*, *> -> JSONObject().also { o -> value.forEach { (k, v) -> o.put(k.toString(), toJson(v)) } }
        is Iterable<*> -> JSONArray().also { a -> value.forEach { a.put(toJson(it)) } }
        is FloatArray -> toJson(value.asList())
        is DoubleArray -> toJson(value.asList())
        is IntArray -> toJson(value.asList())
        is LongArray -> toJson(value.asList())
        else -> throw IllegalArgumentException("cannot write ${value::class.simpleName} as JSON")
    }
}

/** Text that is not JSON. */
class JsonException(message: String) : IllegalArgumentException(message)

/**
 * A JSON object with typed accessors whose errors name the file and the field path,
 * e.g. "app_manifest.json: inputs[0].dtype: expected a string, got the number 3".
 */
class JsonObject(private val json: JSONObject, val path: String, private val origin: String) {
    private fun where(key: String) = if (path.isEmpty()) key else "$path.$key"

    private fun value(key: String): Any? = json.opt(key).takeUnless { it == JSONObject.NULL }

    fun fail(key: String, message: String): Nothing = throw ManifestException("$origin: ${where(key)}: $message")

    fun has(key: String) = value(key) != null

    fun string(key: String): String = value(key) as? String ?: fail(key, expected("a string", key))

    fun stringOrNull(key: String): String? = if (has(key)) string(key) else null

    fun long(key: String): Long = integer(value(key)) ?: fail(key, expected("an integer", key))

    fun int(key: String): Int {
        val v = long(key)
        if (v < Int.MIN_VALUE || v > Int.MAX_VALUE) fail(key, "$v is out of range")
        return v.toInt()
    }

    fun double(key: String): Double = (value(key) as? Number)?.toDouble() ?: fail(key, expected("a number", key))

    fun obj(key: String): JsonObject =
        JsonObject(value(key) as? JSONObject ?: fail(key, expected("an object", key)), where(key), origin)

    fun objOrNull(key: String): JsonObject? = if (has(key)) obj(key) else null

    private fun array(key: String): JSONArray = value(key) as? JSONArray ?: fail(key, expected("a list", key))

    private fun <T> items(key: String, read: (Any?, String) -> T): List<T> {
        val a = array(key)
        return List(a.length()) { i -> read(a.opt(i).takeUnless { it == JSONObject.NULL }, "$key[$i]") }
    }

    fun objects(key: String): List<JsonObject> = items(key) { v, at ->
        JsonObject(v as? JSONObject ?: fail(at, "expected an object, got ${describe(v)}"), where(at), origin)
    }

    fun ints(key: String): List<Int> = items(key) { v, at ->
        val n = (v as? Int)?.toLong() ?: v as? Long ?: fail(at, "expected an integer, got ${describe(v)}")
        if (n in Int.MIN_VALUE..Int.MAX_VALUE) n.toInt() else fail(at, "$n is out of range")
    }

    fun doubles(key: String): List<Double> = items(key) { v, at ->
        (v as? Number)?.toDouble() ?: fail(at, "expected a number, got ${describe(v)}")
    }

    fun strings(key: String): List<String> = items(key) { v, at -> v as? String ?: fail(at, "expected a string, got ${describe(v)}") }

    private fun expected(what: String, key: String) =
        if (!json.has(key)) "missing (expected $what)" else "expected $what, got ${describe(value(key))}"

    companion object {
        fun parse(text: String, origin: String): JsonObject {
            val value = try {
                Json.readValue(text)
            } catch (e: JsonException) {
                throw ManifestException("$origin: ${e.message}")
            }
            return JsonObject(value as? JSONObject ?: throw ManifestException("$origin: expected a JSON object at the top level"), "", origin)
        }

        /** A whole number as a Long: JSON integers, and doubles with no fraction (1.0 from another writer). */
        private fun integer(v: Any?): Long? = when (v) {
            is Int -> v.toLong()
            is Long -> v
            is Double -> if (v == Math.floor(v) && !v.isInfinite()) v.toLong() else null
            else -> null
        }

        fun describe(v: Any?): String = when (v) {
            null -> "null"
            is String -> "a string"
            is Boolean -> "a boolean"
            is Number -> "the number $v"
            is JSONObject -> "an object"
            is JSONArray -> "a list"
            else -> v::class.simpleName ?: "?"
        }
    }
}

/** A manifest or samples file the app cannot use; the message names the file and field. */
class ManifestException(message: String) : IllegalArgumentException(message)
