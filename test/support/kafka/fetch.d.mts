/** The pom's Kafka version. */
export function kafkaVersion(): string;
/** The folder of Kafka's jars, fetched from Maven Central into the test cache when missing. */
export function kafkaLibs(): string;
