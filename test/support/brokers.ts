/**
 * @module Real message brokers for the trigger suites (Kafka 4 in KRaft mode, Mosquitto, nats-server) on
 * loopback ports. The processes are started by broker-processes.mjs, plain JavaScript shared with bench/.
 */

export {
  type Broker,
  freePort,
  startKafka,
  startMosquitto,
  startNats,
} from './broker-processes.mjs';
