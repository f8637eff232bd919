/** The MQTT transport (docs/mqtt.md). */
export { MqttTransport, type MqttTransportEvents, type MqttTransportOptions, type MqttTransportStats } from './transport.js';
export { MqttIngress, type IngressHost } from './ingress.js';
export { checkClientId, checkDeliver, checkPublish, checkSubscribe, checkWillAtConnect, type AclConnection, type AclDecision, type AclOptions } from './acl.js';
export { downTopic, filterCovers, isValidTopicFilter, isValidTopicName, parseAuthTopic, topicMatches, upTopic } from './topics.js';
export { MqttFrameGuard, type FrameViolation } from './frame-guard.js';
export { MqttError, type MqttErrorCode } from './errors.js';
