package one.talon.bridge.peers;

import static io.confluent.parallelconsumer.ParallelConsumerOptions.ProcessingOrder.KEY;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.confluent.parallelconsumer.ParallelConsumerOptions;
import io.confluent.parallelconsumer.ParallelStreamProcessor;
import java.io.BufferedReader;
import java.io.File;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.UncheckedIOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Base64;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.LongAdder;
import org.apache.avro.Schema;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * A Confluent Parallel Consumer worker (KEY order) that applies talon-bridge's input commands
 * to the Talon.One Integration API and publishes one result record per command.
 *
 * <pre>
 *   java -jar pc-harness.jar run --bootstrap HOST:PORT --input-topic T --output-topic O
 *       --group G --talon-url URL --api-key K [--max-concurrency 256] --schema Command.avsc
 *   java -jar pc-harness.jar bodies --schema Command.avsc --api-key K   (base64 lines on stdin)
 * </pre>
 */
public final class Harness {
  private static final ObjectMapper JSON = new ObjectMapper();

  private Harness() {}

  public static void main(String[] argv) throws Exception {
    if (argv.length == 0) {
      System.err.println("usage: Harness run|bodies --option value ...");
      System.exit(2);
    }
    Map<String, String> args = new HashMap<>();
    for (int i = 1; i + 1 < argv.length; i += 2) {
      args.put(argv[i].replaceFirst("^--", ""), argv[i + 1]);
    }
    Schema schema = new Schema.Parser().parse(new File(required(args, "schema")));
    Requests requests = new Requests(schema, args.getOrDefault("api-key", "bench-key"));
    switch (argv[0]) {
      case "run" -> run(args, requests);
      case "bodies" -> bodies(requests);
      default -> {
        System.err.println("unknown mode " + argv[0]);
        System.exit(2);
      }
    }
  }

  private static String required(Map<String, String> args, String name) {
    String v = args.get(name);
    if (v == null) {
      System.err.println("missing --" + name);
      System.exit(2);
    }
    return v;
  }

  /** Prints, for each base64 line of stdin, the request built for it as one JSON line. */
  private static void bodies(Requests requests) throws IOException {
    BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
    String line;
    while ((line = in.readLine()) != null) {
      if (line.isBlank()) {
        continue;
      }
      Requests.Request r = requests.build(Base64.getDecoder().decode(line.trim()));
      ObjectNode out = JSON.createObjectNode();
      out.put("eventId", r.eventId());
      out.put("method", r.method());
      out.put("path", r.pathAndQuery());
      out.set("headers", JSON.valueToTree(r.headers()));
      out.set("body", JSON.readTree(r.body()));
      System.out.println(JSON.writeValueAsString(out));
    }
  }

  private static void run(Map<String, String> args, Requests requests) {
    String bootstrap = required(args, "bootstrap");
    String input = required(args, "input-topic");
    String output = required(args, "output-topic");
    URI base = URI.create(required(args, "talon-url").replaceAll("/+$", ""));
    int concurrency = Integer.parseInt(args.getOrDefault("max-concurrency", "256"));

    Properties c = new Properties();
    c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    c.put(ConsumerConfig.GROUP_ID_CONFIG, required(args, "group"));
    c.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false"); // Parallel Consumer commits
    c.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
    c.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
    c.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
    Properties p = new Properties();
    p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    p.put(ProducerConfig.ACKS_CONFIG, "all");
    p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
    p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());

    // Everything else is Parallel Consumer's default (commit mode, batch size, retry delay...).
    ParallelConsumerOptions<String, byte[]> options =
        ParallelConsumerOptions.<String, byte[]>builder()
            .ordering(KEY)
            .maxConcurrency(concurrency)
            .consumer(new KafkaConsumer<>(c))
            .producer(new KafkaProducer<>(p))
            .build();
    ParallelStreamProcessor<String, byte[]> pc =
        ParallelStreamProcessor.createEosStreamProcessor(options);

    HttpClient http =
        HttpClient.newBuilder()
            .version(HttpClient.Version.HTTP_1_1)
            .connectTimeout(Duration.ofSeconds(2))
            .build();
    Map<String, LongAdder> statuses = new ConcurrentHashMap<>();
    LongAdder processed = new LongAdder();

    Runtime.getRuntime()
        .addShutdownHook(
            new Thread(
                () -> {
                  pc.closeDontDrainFirst();
                  System.out.println(summary(processed, statuses));
                  System.out.flush();
                }));

    pc.subscribe(List.of(input));
    pc.pollAndProduce(
        ctx -> {
          ConsumerRecord<String, byte[]> rec = ctx.getSingleConsumerRecord();
          Requests.Request r;
          try {
            r = requests.build(rec.value());
          } catch (IOException e) {
            statuses.computeIfAbsent("undecodable", k -> new LongAdder()).increment();
            processed.increment();
            return result(output, rec, null, "undecodable", 0);
          }
          HttpRequest.Builder req =
              HttpRequest.newBuilder(base.resolve(r.pathAndQuery()))
                  .timeout(Duration.ofSeconds(5))
                  .method(r.method(), HttpRequest.BodyPublishers.ofByteArray(r.body()));
          r.headers().forEach(req::header);
          HttpResponse<byte[]> resp;
          try {
            resp = http.send(req.build(), HttpResponse.BodyHandlers.ofByteArray());
          } catch (IOException e) {
            // Left to Parallel Consumer's retry (the same key waits, so order holds).
            statuses.computeIfAbsent("io-error", k -> new LongAdder()).increment();
            throw new UncheckedIOException(e);
          } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException(e);
          }
          int status = resp.statusCode();
          int effects = 0;
          if (status == 200 && resp.body().length > 0) {
            try {
              JsonNode parsed = JSON.readTree(resp.body());
              effects = parsed.path("effects").size();
            } catch (IOException e) {
              status = -1;
            }
          }
          statuses.computeIfAbsent(Integer.toString(status), k -> new LongAdder()).increment();
          processed.increment();
          return result(output, rec, r.eventId(), Integer.toString(status), effects);
        });

    Thread reporter =
        new Thread(
            () -> {
              while (true) {
                try {
                  Thread.sleep(5000);
                } catch (InterruptedException e) {
                  return;
                }
                System.err.println(summary(processed, statuses));
              }
            },
            "reporter");
    reporter.setDaemon(true);
    reporter.start();
  }

  private static ProducerRecord<String, byte[]> result(
      String topic, ConsumerRecord<String, byte[]> rec, String eventId, String status, int effects) {
    ObjectNode v = JSON.createObjectNode();
    v.put("eventId", eventId);
    v.put("status", status);
    v.put("effects", effects);
    v.put("partition", rec.partition());
    v.put("offset", rec.offset());
    try {
      return new ProducerRecord<>(topic, rec.key(), JSON.writeValueAsBytes(v));
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  private static String summary(LongAdder processed, Map<String, LongAdder> statuses) {
    ObjectNode s = JSON.createObjectNode();
    s.put("processed", processed.sum());
    ObjectNode by = s.putObject("statuses");
    new TreeMap<>(statuses).forEach((k, v) -> by.put(k, v.sum()));
    return s.toString();
  }
}
