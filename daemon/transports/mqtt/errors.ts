/**
 * Errors of the MQTT transport. Code branches on `code`, never on message text.
 */
import { CodedError } from '../../../common/errors.js';

/** Stable codes of the MQTT area. */
export type MqttErrorCode =
  /** An option is out of range or missing (named in the message). */
  | 'GH_MQTT_BAD_OPTION'
  /** A listener could not bind its address. */
  | 'GH_MQTT_LISTEN'
  /** A publish on a down topic did not complete in time. */
  | 'GH_MQTT_PUBLISH_TIMEOUT'
  /** The transport is not started, or was stopped. */
  | 'GH_MQTT_NOT_RUNNING';

export class MqttError extends CodedError<MqttErrorCode> {}
