package dev.meshlet.interop;

import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.boot.web.client.RestTemplateBuilder;
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
	 * Built from Boot's RestTemplateBuilder so that Micrometer's observation (and with it
	 * trace propagation) is applied, and load-balanced so that hosts are service names.
	 */
	@Bean
	@LoadBalanced
	RestTemplate loadBalancedRestTemplate(RestTemplateBuilder builder) {
		return builder.build();
	}
}
