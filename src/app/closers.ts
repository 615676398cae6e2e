import type { Logger } from "../observability/logger.js";

/** Starts what must be closed again if a later step fails. */
export class Closers {
  private readonly steps: Array<{ name: string; close: () => Promise<void> }> = [];
  add(name: string, close: () => Promise<void>): void {
    this.steps.unshift({ name, close });
  }
  async closeAll(logger: Logger): Promise<void> {
    for (const step of this.steps.splice(0)) {
      try {
        await step.close();
      } catch (error) {
        logger.warn({ err: error, step: step.name }, "shutdown step failed");
      }
    }
  }
}
