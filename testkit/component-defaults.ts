/**
 * The settings components get from the shipped config defaults, for tests and benches that build
 * a component directly: derived from the schema through the daemon's own mapping, so the schema
 * stays the single source of every default.
 */
import { backendClientSettings, mqttSettings } from '../daemon/config/settings.js';
import { validateConfig } from '../daemon/config/validate.js';
import type { GatehouseConfig } from '../daemon/config/schema.js';
import { minimalConfigObject } from './config.js';

function defaultConfig(): GatehouseConfig {
  const r = validateConfig(minimalConfigObject());
  if (!r.ok) throw new Error(`the minimal test config does not validate: ${JSON.stringify(r.issues)}`);
  return r.config;
}

/** The whole default config (with the minimal required values of testkit/config.ts). */
export const DEFAULT_CONFIG: GatehouseConfig = defaultConfig();

/** `backend.*` defaults as BackendClient settings. */
export const BACKEND_CLIENT_DEFAULTS = backendClientSettings(DEFAULT_CONFIG);

/** `mqtt.*` defaults as MqttTransport settings (TCP on 127.0.0.1:1883 unless overridden). */
export const MQTT_DEFAULTS = mqttSettings(DEFAULT_CONFIG);
