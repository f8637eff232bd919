import type { Check } from '../types.js';

/** mqtt.listeners: every configured broker listener is accepting connections. */
export const mqttListeners: Check = {
  id: 'mqtt.listeners',
  description: 'MQTT listeners are accepting connections',
  run(ctx) {
    if (!ctx.config.ok) return { status: 'skip', message: 'no valid config' };
    if (ctx.mqtt === undefined) return { status: 'skip', message: 'only the running daemon knows (run without --offline)' };
    const listeners = ctx.mqtt();
    if (listeners.length === 0) return { status: 'skip', message: 'no MQTT listener configured' };
    const down = listeners.filter((l) => !l.listening);
    const list = listeners.map((l) => `${l.name} ${l.address}:${l.port}`).join(', ');
    if (down.length > 0) {
      return {
        status: 'fail',
        message: `not listening: ${down.map((l) => `${l.name} ${l.address}:${l.port}`).join(', ')}`,
        action: 'is another broker using the port (ss -ltnp)? check the TLS cert/key files and the daemon log',
      };
    }
    return { status: 'ok', message: list };
  },
};
