/**
 * Every way out of the demo, in one place. SIGINT and SIGTERM ask for a clean stop; SIGHUP
 * reloads (as it does in the daemon) instead of killing the demo; an uncaught error or an
 * unhandled rejection kills the children at once and exits 1; the process 'exit' event kills
 * whatever is still running. A `kill -9` runs none of this: the children were started with a
 * parent-death signal (common/child-process.ts), and the next demo reaps by pid file.
 */
import { write, type CliIO } from '../common/cli-io.js';

export interface ExitGuardOptions {
  io: CliIO;
  /** Synchronous: kill the children (SIGKILL) and remove the pid file. Called at most once per path. */
  killNow: () => void;
  /** SIGHUP. */
  onHup: () => void;
}

/** Handlers installed for the life of one `gatehouse demo`, removed by `dispose()`. */
export class ExitGuard {
  readonly #o: ExitGuardOptions;
  readonly #stopped: Promise<NodeJS.Signals>;
  #resolveStop: (s: NodeJS.Signals) => void = () => undefined;
  #signalled = false;
  readonly #onSignal = (signal: NodeJS.Signals): void => {
    // A second Ctrl-C while the first one's clean stop runs: stop now, children included.
    if (this.#signalled) this.#fatal(new Error(`second ${signal} while stopping`));
    this.#signalled = true;
    this.#resolveStop(signal);
  };
  readonly #onHup = (): void => this.#o.onHup();
  readonly #onFatal = (err: unknown): void => this.#fatal(err);
  readonly #onExit = (): void => this.#o.killNow();
  /** Each process event this guard handles, with its handler: installed together, removed together. */
  readonly #handlers: readonly (readonly [string, Parameters<typeof process.on>[1]])[] = [
    ['SIGINT', this.#onSignal],
    ['SIGTERM', this.#onSignal],
    ['SIGHUP', this.#onHup],
    ['uncaughtException', this.#onFatal],
    ['unhandledRejection', this.#onFatal],
    ['exit', this.#onExit],
  ];

  constructor(o: ExitGuardOptions) {
    this.#o = o;
    this.#stopped = new Promise((resolve) => (this.#resolveStop = resolve));
    for (const [event, handler] of this.#handlers) process.on(event, handler);
  }

  /** Resolves with the first SIGINT or SIGTERM. */
  get stopRequested(): Promise<NodeJS.Signals> {
    return this.#stopped;
  }

  #fatal(err: unknown): void {
    // Children first: writing the message can itself fail (a closed terminal is one way here).
    this.#o.killNow();
    try {
      write(this.#o.io.stderr, `gatehouse demo: unexpected error, stopped: ${err instanceof Error ? err.message : String(err)}`);
    } catch {
      // nowhere left to say it
    }
    process.exit(1);
  }

  dispose(): void {
    for (const [event, handler] of this.#handlers) process.off(event, handler);
  }
}
