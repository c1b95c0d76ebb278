package dev.meshlet.interop;

import io.micrometer.observation.ObservationRegistry;

import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.cloud.client.loadbalancer.LoadBalanced;
import org.springframework.context.annotation.Bean;
import org.springframework.web.client.RestTemplate;

/**
 * A plain Spring Cloud Consul service, the peer of Meshlet's interop tests. No Meshlet
 * code runs here: whatever works between it and a Meshlet service works between any
 * Spring Cloud service and Meshlet.
 */
@SpringBootApplication
public class SpringPeerApplication {

	public static void main(String[] args) {
		SpringApplication.run(SpringPeerApplication.class, args);
	}

	/**
	 * Observed through Boot's ObservationRegistry (so that trace headers are written), and
	 * load-balanced so that hosts are service names. Built without Boot's RestTemplateBuilder,
	 * whose package moved in Boot 4: one source builds on Boot 3 and Boot 4.
	 */
	@Bean
	@LoadBalanced
	RestTemplate loadBalancedRestTemplate(ObservationRegistry observations) {
		RestTemplate template = new RestTemplate();
		template.setObservationRegistry(observations);
		return template;
	}
}
