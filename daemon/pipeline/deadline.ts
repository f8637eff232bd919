/** The deadline around one verifier call (every wait has a timeout). */
import { PipelineError } from './errors.js';
import type { VerifyResult } from './types.js';

/** Every wait has a deadline: resolves with the verifier's result or fails at `ms`. */
export async function withDeadline(
  run: (signal: AbortSignal) => Promise<VerifyResult>,
  ms: number,
  outer: AbortSignal,
): Promise<VerifyResult> {
  const controller = new AbortController();
  const onOuter = (): void => controller.abort(new PipelineError('GH_PIPELINE_CLOSED', 'pipeline closed'));
  outer.addEventListener('abort', onOuter, { once: true });
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    const fail = (): void => reject(controller.signal.reason);
    timer = setTimeout(() => {
      controller.abort(new PipelineError('GH_PIPELINE_VERIFY_TIMEOUT', `verifier gave no answer within ${ms} ms`));
    }, ms);
    controller.signal.addEventListener('abort', fail, { once: true });
  });
  try {
    return await Promise.race([run(controller.signal), deadline]);
  } finally {
    clearTimeout(timer);
    outer.removeEventListener('abort', onOuter);
    // Settles the deadline promise's listener without an unhandled rejection.
    deadline.catch(() => undefined);
  }
}
