/**
 * A minimal valid config for tests (service helper). Every other option takes its default.
 */
export const TEST_BACKEND_KEY = Buffer.alloc(32, 7).toString('base64url');

export function minimalConfigYaml(extra = ''): string {
  return [
    'gateway:',
    '  id: gw-test-1',
    'backend:',
    '  url: https://backend.example:8443',
    `  backendPublicKey: ${TEST_BACKEND_KEY}`,
    '  backendKid: backend-1',
    extra,
  ].join('\n');
}

export function minimalConfigObject(): Record<string, Record<string, unknown>> {
  return {
    gateway: { id: 'gw-test-1' },
    backend: { url: 'https://backend.example:8443', backendPublicKey: TEST_BACKEND_KEY, backendKid: 'backend-1' },
  };
}
