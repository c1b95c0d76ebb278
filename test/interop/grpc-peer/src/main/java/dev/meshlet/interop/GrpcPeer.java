package dev.meshlet.interop;

import io.grpc.CallOptions;
import io.grpc.ClientCall;
import io.grpc.Contexts;
import io.grpc.Context;
import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.InsecureServerCredentials;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.Server;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.ServerInterceptors;
import io.grpc.ServerServiceDefinition;
import io.grpc.Status;
import io.grpc.stub.ClientCalls;
import io.grpc.stub.ServerCalls;
import io.grpc.stub.StreamObserver;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A plain grpc-java service for Meshlet's interop test: serves meshlet.interop.Echo, registers
 * in Consul as a grpc-spring (net.devh) service does (Meta gRPC_port), and calls a Node
 * service by name: it looks the name up in Consul and dials the instance's gRPC_port.
 *
 * Args: --consul=http://127.0.0.1:8500 --name=grpc-java-peer --id=grpc-java-peer-1 [--port=0]
 */
public final class GrpcPeer {
  /** meshlet.interop.Text { string text = 1; } on the wire, without protoc. */
  static final MethodDescriptor.Marshaller<String> TEXT = new MethodDescriptor.Marshaller<>() {
    @Override
    public InputStream stream(String value) {
      byte[] utf8 = value.getBytes(StandardCharsets.UTF_8);
      ByteArrayOutputStream out = new ByteArrayOutputStream(utf8.length + 6);
      if (utf8.length > 0) {
        out.write(0x0a); // field 1, length-delimited
        writeVarint(out, utf8.length);
        out.writeBytes(utf8);
      }
      return new ByteArrayInputStream(out.toByteArray());
    }

    @Override
    public String parse(InputStream stream) {
      try {
        byte[] bytes = stream.readAllBytes();
        int[] pos = {0};
        String text = "";
        while (pos[0] < bytes.length) {
          long key = readVarint(bytes, pos);
          int wire = (int) (key & 7);
          if (wire == 2) {
            int len = (int) readVarint(bytes, pos);
            if ((key >>> 3) == 1) text = new String(bytes, pos[0], len, StandardCharsets.UTF_8);
            pos[0] += len;
          } else if (wire == 0) {
            readVarint(bytes, pos);
          } else if (wire == 1) {
            pos[0] += 8;
          } else if (wire == 5) {
            pos[0] += 4;
          } else {
            throw new IOException("unsupported wire type " + wire);
          }
        }
        return text;
      } catch (IOException e) {
        throw Status.INTERNAL.withDescription("bad Text message").withCause(e).asRuntimeException();
      }
    }
  };

  static void writeVarint(ByteArrayOutputStream out, int value) {
    while ((value & ~0x7f) != 0) {
      out.write((value & 0x7f) | 0x80);
      value >>>= 7;
    }
    out.write(value);
  }

  static long readVarint(byte[] b, int[] pos) {
    long result = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      byte x = b[pos[0]++];
      result |= (long) (x & 0x7f) << shift;
      if ((x & 0x80) == 0) return result;
    }
    throw new IllegalArgumentException("malformed varint");
  }

  static MethodDescriptor<String, String> unary(String method) {
    return MethodDescriptor.<String, String>newBuilder()
        .setType(MethodDescriptor.MethodType.UNARY)
        .setFullMethodName(MethodDescriptor.generateFullMethodName("meshlet.interop.Echo", method))
        .setRequestMarshaller(TEXT)
        .setResponseMarshaller(TEXT)
        .build();
  }

  static final MethodDescriptor<String, String> SAY = unary("Say");
  static final MethodDescriptor<String, String> RELAY = unary("Relay");

  static final Metadata.Key<String> TAGS = Metadata.Key.of("x-meshlet-tags", Metadata.ASCII_STRING_MARSHALLER);
  static final Metadata.Key<String> CALLER = Metadata.Key.of("x-meshlet-caller", Metadata.ASCII_STRING_MARSHALLER);
  static final Metadata.Key<String> TRACEPARENT = Metadata.Key.of("traceparent", Metadata.ASCII_STRING_MARSHALLER);
  static final Context.Key<Metadata> HEADERS = Context.key("headers");

  static String arg(String[] args, String name, String fallback) {
    for (String a : args) if (a.startsWith("--" + name + "=")) return a.substring(name.length() + 3);
    if (fallback == null) throw new IllegalArgumentException("missing --" + name);
    return fallback;
  }

  public static void main(String[] args) throws Exception {
    String consul = arg(args, "consul", null);
    String name = arg(args, "name", "grpc-java-peer");
    String id = arg(args, "id", name + "-1");
    int wanted = Integer.parseInt(arg(args, "port", "0"));
    HttpClient http = HttpClient.newHttpClient();

    ServerInterceptor keepHeaders = new ServerInterceptor() {
      @Override
      public <Q, A> ServerCall.Listener<Q> interceptCall(ServerCall<Q, A> call, Metadata headers, ServerCallHandler<Q, A> next) {
        return Contexts.interceptCall(Context.current().withValue(HEADERS, headers), call, headers, next);
      }
    };
    ServerServiceDefinition echo = ServerServiceDefinition.builder("meshlet.interop.Echo")
        .addMethod(SAY, ServerCalls.asyncUnaryCall((String text, StreamObserver<String> out) -> {
          Metadata h = HEADERS.get();
          out.onNext("java:" + id + "\nin=" + text + "\ntags=" + nz(h.get(TAGS)) + "\ncaller=" + nz(h.get(CALLER))
              + "\ntraceparent=" + nz(h.get(TRACEPARENT)));
          out.onCompleted();
        }))
        .addMethod(RELAY, ServerCalls.asyncUnaryCall((String target, StreamObserver<String> out) -> {
          try {
            out.onNext("java:" + id + " relayed\n" + callByName(http, consul, target, HEADERS.get()));
            out.onCompleted();
          } catch (Exception e) {
            out.onError(Status.UNAVAILABLE.withDescription("relay to " + target + ": " + e).asRuntimeException());
          }
        }))
        .build();
    Server server = Grpc.newServerBuilderForPort(wanted, InsecureServerCredentials.create())
        .addService(ServerInterceptors.intercept(echo, keepHeaders))
        .build()
        .start();
    int port = server.getPort();

    // As grpc-spring's GrpcMetadataConsulConfiguration does: the gRPC port in Meta.gRPC_port.
    String body = "{\"ID\":\"" + id + "\",\"Name\":\"" + name + "\",\"Address\":\"127.0.0.1\",\"Port\":" + port
        + ",\"Meta\":{\"gRPC_port\":\"" + port + "\",\"secure\":\"false\"}"
        + ",\"Check\":{\"TCP\":\"127.0.0.1:" + port + "\",\"Interval\":\"1s\",\"Status\":\"passing\"}}";
    consulPut(http, consul + "/v1/agent/service/register", body);
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      try {
        consulPut(http, consul + "/v1/agent/service/deregister/" + id, "");
        server.shutdown().awaitTermination(5, TimeUnit.SECONDS);
      } catch (Exception e) {
        System.err.println("shutdown: " + e);
      }
    }));
    System.out.println("GRPC-PEER LISTENING " + port);
    System.out.flush();
    server.awaitTermination();
  }

  static String nz(String s) {
    return s == null ? "" : s;
  }

  static void consulPut(HttpClient http, String url, String body) throws Exception {
    HttpResponse<String> res = http.send(
        HttpRequest.newBuilder(URI.create(url)).PUT(HttpRequest.BodyPublishers.ofString(body)).build(),
        HttpResponse.BodyHandlers.ofString());
    if (res.statusCode() != 200) throw new IllegalStateException(url + ": " + res.statusCode() + " " + res.body());
  }

  static final Pattern SERVICE_ADDRESS = Pattern.compile("\"Service\"\\s*:\\s*\\{.*?\"Address\"\\s*:\\s*\"([^\"]*)\"", Pattern.DOTALL);
  static final Pattern SERVICE_PORT = Pattern.compile("\"Service\"\\s*:\\s*\\{.*?\"Port\"\\s*:\\s*(\\d+)", Pattern.DOTALL);
  static final Pattern GRPC_PORT = Pattern.compile("\"gRPC_port\"\\s*:\\s*\"(\\d+)\"");

  /** What grpc-spring's DiscoveryClientNameResolver does: the instance's gRPC_port, else its port. */
  static String callByName(HttpClient http, String consul, String service, Metadata inbound) throws Exception {
    HttpResponse<String> res = http.send(
        HttpRequest.newBuilder(URI.create(consul + "/v1/health/service/" + service + "?passing=true")).build(),
        HttpResponse.BodyHandlers.ofString());
    String json = res.body();
    Matcher address = SERVICE_ADDRESS.matcher(json);
    if (!address.find()) throw new IllegalStateException("no passing instance of " + service + " in " + json);
    Matcher grpcPort = GRPC_PORT.matcher(json);
    Matcher port = SERVICE_PORT.matcher(json);
    int p = grpcPort.find() ? Integer.parseInt(grpcPort.group(1)) : port.find() ? Integer.parseInt(port.group(1)) : -1;
    ManagedChannel channel = Grpc.newChannelBuilderForAddress(address.group(1), p, InsecureChannelCredentials.create()).build();
    try {
      Metadata out = new Metadata();
      // A service in the mesh forwards the tags and the trace it received.
      for (Metadata.Key<String> k : new Metadata.Key[] {TAGS, TRACEPARENT}) {
        String v = inbound.get(k);
        if (v != null) out.put(k, v);
      }
      out.put(CALLER, "service=grpc-java-peer");
      ClientCall<String, String> call = io.grpc.ClientInterceptors
          .intercept(channel, io.grpc.stub.MetadataUtils.newAttachHeadersInterceptor(out))
          .newCall(SAY, CallOptions.DEFAULT.withDeadlineAfter(10, TimeUnit.SECONDS));
      return ClientCalls.blockingUnaryCall(call, "from-java");
    } finally {
      channel.shutdownNow();
    }
  }
}
