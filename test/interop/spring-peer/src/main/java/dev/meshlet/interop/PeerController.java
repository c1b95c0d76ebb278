package dev.meshlet.interop;

import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

import io.micrometer.tracing.Span;
import io.micrometer.tracing.Tracer;
import jakarta.servlet.http.HttpServletRequest;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import org.springframework.beans.factory.annotation.Value;
import org.springframework.cloud.client.ServiceInstance;
import org.springframework.cloud.client.discovery.DiscoveryClient;
import org.springframework.core.env.Environment;
import org.springframework.http.HttpEntity;
import org.springframework.http.HttpHeaders;
import org.springframework.http.HttpMethod;
import org.springframework.http.ResponseEntity;
import org.springframework.web.bind.annotation.GetMapping;
import org.springframework.web.bind.annotation.PathVariable;
import org.springframework.web.bind.annotation.RestController;
import org.springframework.web.client.RestClientResponseException;
import org.springframework.web.client.RestTemplate;

/** What the interop tests ask the peer: who it is, what it saw, what it finds, and to call others. */
@RestController
public class PeerController {

	/** Meshlet's tag header; the peer forwards it untouched, as any Spring service would forward a header. */
	static final String TAG_HEADER = "x-meshlet-tags";

	private static final Logger log = LoggerFactory.getLogger(PeerController.class);

	private final RestTemplate loadBalanced;

	private final DiscoveryClient discovery;

	private final Environment environment;

	private final Tracer tracer;

	@Value("${spring.cloud.consul.discovery.instance-id}")
	private String instanceId;

	@Value("${spring.application.name}")
	private String service;

	PeerController(RestTemplate loadBalanced, DiscoveryClient discovery, Environment environment, Tracer tracer) {
		this.loadBalanced = loadBalanced;
		this.discovery = discovery;
		this.environment = environment;
		this.tracer = tracer;
	}

	@GetMapping("/hello")
	Map<String, Object> hello(HttpServletRequest request) {
		String traceId = currentTraceId();
		log.info("hello traceId={} tags={}", traceId, request.getHeader(TAG_HEADER));
		Map<String, Object> body = new LinkedHashMap<>();
		body.put("service", service);
		body.put("instanceId", instanceId);
		body.put("traceId", traceId);
		body.put("headers", headersOf(request));
		return body;
	}

	/** Calls `service` by name through the load-balanced client, forwarding only the tag header. */
	@GetMapping("/call/{service}/**")
	ResponseEntity<String> call(@PathVariable("service") String target, HttpServletRequest request) {
		String prefix = "/call/" + target;
		String rest = request.getRequestURI().substring(request.getContextPath().length() + prefix.length());
		String query = request.getQueryString();
		String url = "http://" + target + (rest.isEmpty() ? "/" : rest) + (query == null ? "" : "?" + query);
		HttpHeaders headers = new HttpHeaders();
		String tags = request.getHeader(TAG_HEADER);
		if (tags != null) {
			headers.set(TAG_HEADER, tags);
		}
		log.info("call {} traceId={}", url, currentTraceId());
		try {
			ResponseEntity<String> res = loadBalanced.exchange(url, HttpMethod.GET, new HttpEntity<>(headers), String.class);
			return ResponseEntity.status(res.getStatusCode()).header("x-peer-instance", instanceId).body(res.getBody());
		}
		catch (RestClientResponseException e) {
			return ResponseEntity.status(e.getStatusCode()).header("x-peer-instance", instanceId).body(e.getResponseBodyAsString());
		}
	}

	@GetMapping("/config/{key}")
	Map<String, Object> config(@PathVariable("key") String key) {
		Map<String, Object> body = new LinkedHashMap<>();
		body.put("key", key);
		body.put("value", environment.getProperty(key));
		return body;
	}

	@GetMapping("/discovery/{service}")
	List<Map<String, Object>> instances(@PathVariable("service") String name) {
		List<Map<String, Object>> out = new ArrayList<>();
		for (ServiceInstance i : discovery.getInstances(name)) {
			Map<String, Object> m = new LinkedHashMap<>();
			m.put("instanceId", i.getInstanceId());
			m.put("serviceId", i.getServiceId());
			m.put("host", i.getHost());
			m.put("port", i.getPort());
			m.put("secure", i.isSecure());
			m.put("uri", String.valueOf(i.getUri()));
			m.put("metadata", new TreeMap<>(i.getMetadata()));
			out.add(m);
		}
		return out;
	}

	private String currentTraceId() {
		Span span = tracer.currentSpan();
		return span == null ? null : span.context().traceId();
	}

	private static Map<String, String> headersOf(HttpServletRequest request) {
		Map<String, String> headers = new TreeMap<>();
		for (String name : Collections.list(request.getHeaderNames())) {
			headers.put(name.toLowerCase(), String.join(",", Collections.list(request.getHeaders(name))));
		}
		return headers;
	}
}
