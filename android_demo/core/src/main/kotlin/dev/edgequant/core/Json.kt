package dev.edgequant.core

/**
 * A small JSON reader and writer, so the core compiles with plain kotlinc and no extra jars.
 *
 * Values map to Kotlin as: object -> Map<String, Any?> (insertion order kept), array -> List<Any?>,
 * string -> String, integer without fraction or exponent -> Long (Double if it does not fit),
 * other numbers -> Double, true/false -> Boolean, null -> null.
 */
object Json {
    fun parse(text: String): Any? {
        val reader = Reader(text)
        reader.skipWhitespace()
        val value = reader.readValue()
        reader.skipWhitespace()
        if (!reader.atEnd()) reader.fail("unexpected trailing characters")
        return value
    }

    /** Compact JSON. Floats are written as their exact double value; NaN and infinities as null. */
    fun write(value: Any?): String = StringBuilder().also { writeTo(it, value) }.toString()

    private fun writeTo(out: StringBuilder, value: Any?) {
        when (value) {
            null -> out.append("null")
            is String -> writeString(out, value)
            is Boolean -> out.append(value)
            is Float -> writeDouble(out, value.toDouble())
            is Double -> writeDouble(out, value)
            is Int, is Long, is Short, is Byte -> out.append(value)
            is Map<*, *> -> {
                out.append('{')
                var first = true
                for ((k, v) in value) {
                    if (!first) out.append(',')
                    first = false
                    writeString(out, k.toString())
                    out.append(':')
                    writeTo(out, v)
                }
                out.append('}')
            }
            is Iterable<*> -> {
                out.append('[')
                value.forEachIndexed { i, v -> if (i > 0) out.append(','); writeTo(out, v) }
                out.append(']')
            }
            is FloatArray -> writeTo(out, value.asList())
            is DoubleArray -> writeTo(out, value.asList())
            is IntArray -> writeTo(out, value.asList())
            is LongArray -> writeTo(out, value.asList())
            else -> throw IllegalArgumentException("cannot write ${value::class.simpleName} as JSON")
        }
    }

    private fun writeDouble(out: StringBuilder, d: Double) {
        if (d.isNaN() || d.isInfinite()) out.append("null") else out.append(d.toString())
    }

    private fun writeString(out: StringBuilder, s: String) {
        out.append('"')
        for (c in s) {
            when (c) {
                '"' -> out.append("\\\"")
                '\\' -> out.append("\\\\")
                '\n' -> out.append("\\n")
                '\r' -> out.append("\\r")
                '\t' -> out.append("\\t")
                '\b' -> out.append("\\b")
                '\u000C' -> out.append("\\f")
                else -> if (c < ' ') out.append("\\u%04x".format(c.code)) else out.append(c)
            }
        }
        out.append('"')
    }

    private class Reader(val s: String) {
        var pos = 0

        fun atEnd() = pos >= s.length

        fun fail(message: String): Nothing = throw JsonException("invalid JSON at offset $pos: $message")

        fun skipWhitespace() {
            while (pos < s.length && (s[pos] == ' ' || s[pos] == '\n' || s[pos] == '\r' || s[pos] == '\t')) pos++
        }

        fun readValue(): Any? {
            if (atEnd()) fail("unexpected end of input")
            return when (val c = s[pos]) {
                '{' -> readObject()
                '[' -> readArray()
                '"' -> readString()
                't' -> readLiteral("true", true)
                'f' -> readLiteral("false", false)
                'n' -> readLiteral("null", null)
                else -> if (c == '-' || c in '0'..'9') readNumber() else fail("unexpected character '$c'")
            }
        }

        private fun readLiteral(word: String, value: Any?): Any? {
            if (!s.startsWith(word, pos)) fail("expected $word")
            pos += word.length
            return value
        }

        private fun readObject(): Map<String, Any?> {
            val map = LinkedHashMap<String, Any?>()
            pos++ // '{'
            skipWhitespace()
            if (!atEnd() && s[pos] == '}') { pos++; return map }
            while (true) {
                skipWhitespace()
                if (atEnd() || s[pos] != '"') fail("expected a string key")
                val key = readString()
                skipWhitespace()
                if (atEnd() || s[pos] != ':') fail("expected ':'")
                pos++
                skipWhitespace()
                map[key] = readValue()
                skipWhitespace()
                if (atEnd()) fail("unterminated object")
                when (s[pos]) {
                    ',' -> pos++
                    '}' -> { pos++; return map }
                    else -> fail("expected ',' or '}'")
                }
            }
        }

        private fun readArray(): List<Any?> {
            val list = ArrayList<Any?>()
            pos++ // '['
            skipWhitespace()
            if (!atEnd() && s[pos] == ']') { pos++; return list }
            while (true) {
                skipWhitespace()
                list.add(readValue())
                skipWhitespace()
                if (atEnd()) fail("unterminated array")
                when (s[pos]) {
                    ',' -> pos++
                    ']' -> { pos++; return list }
                    else -> fail("expected ',' or ']'")
                }
            }
        }

        private fun readString(): String {
            pos++ // opening quote
            val sb = StringBuilder()
            while (true) {
                if (atEnd()) fail("unterminated string")
                val c = s[pos++]
                when {
                    c == '"' -> return sb.toString()
                    c == '\\' -> {
                        if (atEnd()) fail("unterminated escape")
                        when (val e = s[pos++]) {
                            '"' -> sb.append('"')
                            '\\' -> sb.append('\\')
                            '/' -> sb.append('/')
                            'b' -> sb.append('\b')
                            'f' -> sb.append('\u000C')
                            'n' -> sb.append('\n')
                            'r' -> sb.append('\r')
                            't' -> sb.append('\t')
                            'u' -> {
                                if (pos + 4 > s.length) fail("short \\u escape")
                                val hex = s.substring(pos, pos + 4)
                                val code = hex.toIntOrNull(16) ?: fail("bad \\u escape '$hex'")
                                sb.append(code.toChar()) // surrogate pairs arrive as two escapes and recombine here
                                pos += 4
                            }
                            else -> fail("bad escape '\\$e'")
                        }
                    }
                    c < ' ' -> fail("control character in string")
                    else -> sb.append(c)
                }
            }
        }

        private fun readNumber(): Any {
            val start = pos
            if (s[pos] == '-') pos++
            if (atEnd()) fail("bad number")
            if (s[pos] == '0') pos++ else if (s[pos] in '1'..'9') { while (!atEnd() && s[pos].isAsciiDigit()) pos++ } else fail("bad number")
            var integral = true
            if (!atEnd() && s[pos] == '.') {
                integral = false
                pos++
                if (atEnd() || !s[pos].isAsciiDigit()) fail("bad number")
                while (!atEnd() && s[pos].isAsciiDigit()) pos++
            }
            if (!atEnd() && (s[pos] == 'e' || s[pos] == 'E')) {
                integral = false
                pos++
                if (!atEnd() && (s[pos] == '+' || s[pos] == '-')) pos++
                if (atEnd() || !s[pos].isAsciiDigit()) fail("bad number")
                while (!atEnd() && s[pos].isAsciiDigit()) pos++
            }
            val text = s.substring(start, pos)
            // Double.parseDouble is correctly rounded, so Python's shortest repr of a float32 scale
            // comes back as exactly the same value.
            return if (integral) text.toLongOrNull() ?: text.toDouble() else text.toDouble()
        }

        private fun Char.isAsciiDigit() = this in '0'..'9'
    }
}

class JsonException(message: String) : IllegalArgumentException(message)

/** Typed access to a parsed JSON object; every error names the field path, e.g. `inputs[0].dtype`. */
class JsonObject(val map: Map<String, Any?>, val path: String, private val origin: String) {
    private fun where(key: String) = if (path.isEmpty()) key else "$path.$key"

    fun fail(key: String, message: String): Nothing = throw ManifestException("$origin: ${where(key)}: $message")

    fun has(key: String) = map[key] != null

    fun string(key: String): String = map[key] as? String ?: fail(key, expected("a string", key))

    fun stringOrNull(key: String): String? = if (map[key] == null) null else string(key)

    fun long(key: String): Long = when (val v = map[key]) {
        is Long -> v
        is Double -> if (v == Math.floor(v) && !v.isInfinite()) v.toLong() else fail(key, "expected an integer, got $v")
        else -> fail(key, expected("an integer", key))
    }

    fun int(key: String): Int {
        val v = long(key)
        if (v < Int.MIN_VALUE || v > Int.MAX_VALUE) fail(key, "$v is out of range")
        return v.toInt()
    }

    fun double(key: String): Double = when (val v = map[key]) {
        is Long -> v.toDouble()
        is Double -> v
        else -> fail(key, expected("a number", key))
    }

    fun obj(key: String): JsonObject {
        @Suppress("UNCHECKED_CAST")
        val m = map[key] as? Map<String, Any?> ?: fail(key, expected("an object", key))
        return JsonObject(m, where(key), origin)
    }

    fun objOrNull(key: String): JsonObject? = if (map[key] == null) null else obj(key)

    fun list(key: String): List<Any?> = map[key] as? List<Any?> ?: fail(key, expected("a list", key))

    fun objects(key: String): List<JsonObject> = list(key).mapIndexed { i, v ->
        @Suppress("UNCHECKED_CAST")
        val m = v as? Map<String, Any?> ?: fail("$key[$i]", "expected an object")
        JsonObject(m, "${where(key)}[$i]", origin)
    }

    fun ints(key: String): List<Int> = list(key).mapIndexed { i, v ->
        when (v) {
            is Long -> if (v in Int.MIN_VALUE..Int.MAX_VALUE) v.toInt() else fail("$key[$i]", "$v is out of range")
            else -> fail("$key[$i]", "expected an integer, got ${describe(v)}")
        }
    }

    fun doubles(key: String): List<Double> = list(key).mapIndexed { i, v ->
        when (v) {
            is Long -> v.toDouble()
            is Double -> v
            else -> fail("$key[$i]", "expected a number, got ${describe(v)}")
        }
    }

    fun strings(key: String): List<String> = list(key).mapIndexed { i, v ->
        v as? String ?: fail("$key[$i]", "expected a string, got ${describe(v)}")
    }

    private fun expected(what: String, key: String) =
        if (key !in map) "missing (expected $what)" else "expected $what, got ${describe(map[key])}"

    companion object {
        fun parse(text: String, origin: String): JsonObject {
            val value = try {
                Json.parse(text)
            } catch (e: JsonException) {
                throw ManifestException("$origin: ${e.message}")
            }
            @Suppress("UNCHECKED_CAST")
            val map = value as? Map<String, Any?> ?: throw ManifestException("$origin: expected a JSON object at the top level")
            return JsonObject(map, "", origin)
        }

        fun describe(v: Any?): String = when (v) {
            null -> "null"
            is String -> "a string"
            is Boolean -> "a boolean"
            is Long, is Double -> "the number $v"
            is Map<*, *> -> "an object"
            is List<*> -> "a list"
            else -> v::class.simpleName ?: "?"
        }
    }
}

/** A manifest or samples file the app cannot use; the message names the file and field. */
class ManifestException(message: String) : IllegalArgumentException(message)
