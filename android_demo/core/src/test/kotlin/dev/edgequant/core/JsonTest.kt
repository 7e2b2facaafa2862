package dev.edgequant.core

import kotlin.test.Test
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertTrue

class JsonTest {
    @Test
    fun parsesNestedValuesWithTheirKotlinTypes() {
        val v = Json.parse("""{"a": [1, -2.5, 3e2, true, null], "b": {"c": "x\"y\\z\n\u00e9\ud83d\ude00"}, "big": 12345678901234567890}""")
        val m = v as Map<*, *>
        assertEquals(listOf(1L, -2.5, 300.0, true, null), m["a"])
        assertEquals("x\"y\\z\né\uD83D\uDE00", (m["b"] as Map<*, *>)["c"])
        assertEquals(1.2345678901234567E19, m["big"]) // past Long: kept as a double
    }

    @Test
    fun aFloat32ScaleWrittenByPythonComesBackExactly() {
        // Python writes float(np.float32(1/255)) as its shortest repr; toFloat() must give the same float32.
        val scale = (Json.parse("0.003921568859368563") as Double).toFloat()
        assertEquals(1f / 255f, scale)
    }

    @Test
    fun rejectsTextThatIsNotOneJsonValue() {
        // org.json reads leniently (unquoted words, a trailing comma); what it cannot read, and anything after the
        // value, is an error. A manifest field of the wrong type is still caught by JsonObject's typed accessors.
        for (bad in listOf("{", "{\"a\" 1}", "\"abc", "{} x", "[1, 2", "")) {
            val e = assertFailsWith<JsonException>(bad) { Json.parse(bad) }
            assertTrue(e.message!!.startsWith("invalid JSON"), e.message)
        }
        val notAnObject = assertFailsWith<ManifestException> { JsonObject.parse("[1]", "m.json") }
        assertEquals("m.json: expected a JSON object at the top level", notAnObject.message)
        val cut = assertFailsWith<ManifestException> { JsonObject.parse("{\"format\": \"edgequant-app-", "m.json") }
        assertTrue(cut.message!!.startsWith("m.json: invalid JSON"), cut.message)
    }

    @Test
    fun writesWhatItReads() {
        val value = linkedMapOf("s" to "tab\there \"q\" \u0001", "n" to listOf(1, 2.5, -0.0, null), "f" to 0.1f, "nan" to Double.NaN, "ok" to false)
        val text = Json.write(value)
        assertEquals("""{"s":"tab\there \"q\" \u0001","n":[1,2.5,-0,null],"f":0.10000000149011612,"nan":null,"ok":false}""", text)
        val back = Json.parse(text) as Map<*, *>
        assertEquals("tab\there \"q\" \u0001", back["s"])
        assertEquals(0.1f, (back["f"] as Double).toFloat())
        assertEquals(listOf("s", "n", "f", "nan", "ok"), back.keys.toList()) // insertion order kept
    }

    @Test
    fun typedAccessNamesTheFieldPath() {
        val o = JsonObject.parse("""{"inputs": [{"dtype": 3}]}""", "m.json")
        val e = assertFailsWith<ManifestException> { o.objects("inputs")[0].string("dtype") }
        assertEquals("m.json: inputs[0].dtype: expected a string, got the number 3", e.message)
        val missing = assertFailsWith<ManifestException> { o.string("model") }
        assertEquals("m.json: model: missing (expected a string)", missing.message)
    }
}
