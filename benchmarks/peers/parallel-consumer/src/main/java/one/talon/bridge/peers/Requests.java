package one.talon.bridge.peers;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.message.BinaryMessageDecoder;

/**
 * Turns one Avro single-object encoded {@code Command} into the Talon.One request talon-bridge
 * sends for it: the same method, path and query, JSON body and headers (bridge/handlers.py,
 * bridge/talon/client.py).
 */
final class Requests {
  /** uuid5(NAMESPACE_URL, "urn:talon-bridge:idempotency-key"), as in bridge/talon/client.py. */
  static final UUID IDEMPOTENCY_NAMESPACE = UUID.fromString("4fe16fa4-14bf-59d9-80fe-a7b09cd5af8c");

  static final String EVENT_ID_HEADER = "X-Talon-Bridge-Event-Id";

  private static final ObjectMapper JSON = new ObjectMapper();

  /** One API call. */
  record Request(
      String eventId,
      String sessionId,
      String method,
      String pathAndQuery,
      byte[] body,
      Map<String, String> headers) {}

  private final BinaryMessageDecoder<GenericRecord> decoder;
  private final String apiKey;

  Requests(Schema commandSchema, String apiKey) {
    this.decoder = new BinaryMessageDecoder<>(GenericData.get(), commandSchema);
    this.apiKey = apiKey;
  }

  /** Decodes single-object bytes (C3 01, 8-byte fingerprint, body) and builds the call. */
  Request build(byte[] value) throws IOException {
    GenericRecord cmd = decoder.decode(value);
    String eventId = cmd.get("eventId").toString();
    String sessionId = cmd.get("sessionId").toString();
    boolean dry = (Boolean) cmd.get("dry");
    GenericRecord payload = (GenericRecord) cmd.get("payload");
    String dryQuery = dry ? "dry=true" : "dry=false";
    String method;
    String path;
    ObjectNode body;
    switch (payload.getSchema().getName()) {
      case "UpdateCustomerSession" -> {
        method = "PUT";
        path = "/v2/customer_sessions/" + sessionSegment(sessionId) + "?" + dryQuery;
        body = sessionBody(payload);
      }
      case "TrackEvent" -> {
        method = "POST";
        path = "/v2/events?silent=no&" + dryQuery;
        body = eventBody(payload);
      }
      case "ReturnCartItems" -> {
        method = "POST";
        path = "/v2/customer_sessions/" + sessionSegment(sessionId) + "/returns?" + dryQuery;
        body = returnBody(payload);
      }
      default -> throw new IOException("unknown payload " + payload.getSchema().getFullName());
    }
    Map<String, String> headers = new LinkedHashMap<>();
    headers.put("Authorization", "ApiKey-v1 " + apiKey);
    headers.put("Accept", "application/json");
    headers.put("Content-Type", "application/json");
    headers.put("Accept-Encoding", "identity");
    headers.put("Idempotency-Key", idempotencyKeyFor(eventId).toString());
    headers.put(EVENT_ID_HEADER, headerSafe(eventId));
    return new Request(eventId, sessionId, method, path, JSON.writeValueAsBytes(body), headers);
  }

  // ------------------------------------------------------------------ bodies

  private static ObjectNode sessionBody(GenericRecord p) throws IOException {
    ObjectNode s = JSON.createObjectNode();
    putString(s, "profileId", p.get("profileId"));
    putString(s, "storeIntegrationId", p.get("storeIntegrationId"));
    putStrings(s, "couponCodes", p.get("couponCodes"));
    putString(s, "referralCode", p.get("referralCode"));
    putStrings(s, "loyaltyCards", p.get("loyaltyCards"));
    s.put("state", p.get("state").toString());
    Object items = p.get("cartItems");
    if (items != null) {
      ArrayNode arr = s.putArray("cartItems");
      for (Object o : (List<?>) items) {
        GenericRecord i = (GenericRecord) o;
        ObjectNode item = arr.addObject();
        item.put("sku", i.get("sku").toString());
        item.put("quantity", (Integer) i.get("quantity"));
        putString(item, "name", i.get("name"));
        if (i.get("price") != null) {
          item.put("price", (Double) i.get("price"));
        }
        putString(item, "category", i.get("category"));
        // An empty attribute map is left out, like a missing one.
        Map<?, ?> attrs = (Map<?, ?>) i.get("attributes");
        if (attrs != null && !attrs.isEmpty()) {
          item.set("attributes", jsonMap(attrs));
        }
      }
    }
    Object costs = p.get("additionalCosts");
    if (costs != null) {
      ObjectNode c = s.putObject("additionalCosts");
      for (Map.Entry<?, ?> e : ((Map<?, ?>) costs).entrySet()) {
        c.putObject(e.getKey().toString()).put("price", (Double) ((GenericRecord) e.getValue()).get("price"));
      }
    }
    putStrings(s, "identifiers", p.get("identifiers"));
    Object attrs = p.get("attributes");
    if (attrs != null) {
      // Null leaves the stored attributes alone; an empty map is sent.
      s.set("attributes", jsonMap((Map<?, ?>) attrs));
    }
    ObjectNode body = JSON.createObjectNode();
    body.set("customerSession", s);
    body.putArray("responseContent").add("customerSession");
    return body;
  }

  private static ObjectNode eventBody(GenericRecord p) throws IOException {
    ObjectNode body = JSON.createObjectNode();
    body.put("type", p.get("type").toString());
    body.put("profileId", p.get("profileId").toString());
    putString(body, "storeIntegrationId", p.get("storeIntegrationId"));
    Map<?, ?> attrs = (Map<?, ?>) p.get("attributes");
    if (attrs != null && !attrs.isEmpty()) {
      body.set("attributes", jsonMap(attrs));
    }
    List<?> cards = (List<?>) p.get("loyaltyCards");
    if (cards != null && !cards.isEmpty()) {
      putStrings(body, "loyaltyCards", cards);
    }
    return body;
  }

  private static ObjectNode returnBody(GenericRecord p) {
    ObjectNode body = JSON.createObjectNode();
    ArrayNode arr = body.putObject("return").putArray("returnedCartItems");
    for (Object o : (List<?>) p.get("returnedCartItems")) {
      GenericRecord i = (GenericRecord) o;
      ObjectNode item = arr.addObject();
      if (i.get("position") != null) {
        item.put("position", (Integer) i.get("position"));
      }
      if (i.get("quantity") != null) {
        item.put("quantity", (Integer) i.get("quantity"));
      }
      putString(item, "sku", i.get("sku"));
    }
    body.putArray("responseContent").add("customerSession");
    return body;
  }

  private static void putString(ObjectNode node, String field, Object value) {
    if (value != null) {
      node.put(field, value.toString());
    }
  }

  private static void putStrings(ObjectNode node, String field, Object values) {
    if (values != null) {
      ArrayNode arr = node.putArray(field);
      for (Object v : (List<?>) values) {
        arr.add(v.toString());
      }
    }
  }

  /** Avro map of JSON documents (each value one JSON text) to a JSON object. */
  private static ObjectNode jsonMap(Map<?, ?> m) throws IOException {
    ObjectNode out = JSON.createObjectNode();
    for (Map.Entry<?, ?> e : m.entrySet()) {
      JsonNode v = JSON.readTree(e.getValue().toString());
      out.set(e.getKey().toString(), v);
    }
    return out;
  }

  // ------------------------------------------------------------------ headers and paths

  /** UUIDv5 of {@code eventId} in {@link #IDEMPOTENCY_NAMESPACE}. */
  static UUID idempotencyKeyFor(String eventId) {
    MessageDigest sha1;
    try {
      sha1 = MessageDigest.getInstance("SHA-1");
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
    ByteBuffer ns = ByteBuffer.allocate(16);
    ns.putLong(IDEMPOTENCY_NAMESPACE.getMostSignificantBits());
    ns.putLong(IDEMPOTENCY_NAMESPACE.getLeastSignificantBits());
    sha1.update(ns.array());
    sha1.update(eventId.getBytes(StandardCharsets.UTF_8));
    byte[] h = sha1.digest();
    h[6] = (byte) ((h[6] & 0x0f) | 0x50);
    h[8] = (byte) ((h[8] & 0x3f) | 0x80);
    ByteBuffer b = ByteBuffer.wrap(h, 0, 16);
    return new UUID(b.getLong(), b.getLong());
  }

  /** Percent-encodes like Python's {@code quote(s, safe="")}. */
  static String percentEncode(String s) {
    StringBuilder out = new StringBuilder();
    for (byte b : s.getBytes(StandardCharsets.UTF_8)) {
      int c = b & 0xff;
      if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
          || c == '-' || c == '.' || c == '_' || c == '~') {
        out.append((char) c);
      } else {
        out.append('%').append(Character.toUpperCase(Character.forDigit(c >> 4, 16)))
            .append(Character.toUpperCase(Character.forDigit(c & 0xf, 16)));
      }
    }
    return out.toString();
  }

  private static String sessionSegment(String sessionId) {
    String encoded = percentEncode(sessionId);
    return encoded.equals(".") || encoded.equals("..") ? encoded.replace(".", "%2E") : encoded;
  }

  private static String headerSafe(String value) {
    for (int i = 0; i < value.length(); i++) {
      char c = value.charAt(i);
      if (c < 0x20 || c > 0x7e) {
        return percentEncode(value);
      }
    }
    return value;
  }
}
