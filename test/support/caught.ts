import { isBrokerError, type BrokerError } from "../../src/domain/errors.js";

/** The BrokerError a promise rejects with; fails the test if it resolves or rejects otherwise. */
export async function caught(promise: Promise<unknown>): Promise<BrokerError> {
  try {
    await promise;
  } catch (error) {
    if (isBrokerError(error)) return error;
    throw error;
  }
  throw new Error("expected a BrokerError");
}
