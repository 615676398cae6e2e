/**
 * Re-wraps every stored ciphertext to the latest key version, online, after a key rotation:
 * `token_sets` (access and refresh token, context = integration id) and `authorization_sessions`
 * (PKCE verifier, context = session id). Rows are read in primary-key order in batches, only those
 * with a ciphertext below the latest version (read from the `…:vN:` prefix, no decryption), and
 * re-wrapped with `Cipher.rewrapBatch` — inside Vault for Vault transit, so the broker never holds
 * the plaintext.
 *
 * Each row is written back only if nobody changed it meanwhile (storage/rewrap-store.ts holds the
 * queries and their conditions). A refresh that stored a new token in between wins; its row is
 * counted as skipped and looked at again by the next pass.
 * Reads never fail during the job, because older key versions stay decryptable until the operator
 * raises the minimum decryption version. The job is resumable: what is done is no longer selected.
 */
import type { Logger } from "../observability/logger.js";
import type { Cipher, CiphertextInput } from "../domain/ports.js";
import { isBrokerError } from "../domain/errors.js";
import type { RewrapStore } from "../storage/rewrap-store.js";

export type RewrapTable = "token_sets" | "authorization_sessions";

export interface RewrapProgress {
  readonly table: RewrapTable;
  /** Rows handled so far in this pass (re-wrapped, skipped or failed). */
  readonly done: number;
  /** Rows below the latest version when the pass started. */
  readonly total: number;
}

export interface RewrapOptions {
  readonly store: RewrapStore;
  readonly cipher: Cipher;
  /** Rows per batch (each row carries up to two ciphertexts). */
  readonly batchSize?: number | undefined;
  readonly logger: Logger;
  /** Stops between batches; what is done stays done. */
  readonly signal?: AbortSignal | undefined;
  readonly onProgress?: ((progress: RewrapProgress) => void) | undefined;
  /** Further passes pick up rows skipped because of concurrent writes. */
  readonly maxPasses?: number | undefined;
}

export interface RewrapResult {
  /** Rows written back with re-wrapped ciphertexts. */
  readonly rewrapped: number;
  /** Rows changed concurrently (a refresh won), left for the next pass. */
  readonly skipped: number;
  /** Rows whose ciphertext the key service refused (tampered, unknown version); logged by id. */
  readonly failed: number;
  readonly latestVersion: number;
}

/** One row to re-wrap: its id, the ciphertexts below the latest version, and the conditional write. */
interface Candidate {
  readonly id: string;
  readonly inputs: readonly CiphertextInput[];
  /** Writes the re-wrapped ciphertexts (same order as `inputs`); false when the row changed meanwhile. */
  readonly write: (rewrapped: readonly string[]) => Promise<boolean>;
}

interface Counts {
  rewrapped: number;
  skipped: number;
  failed: number;
}

export async function rewrapAll(options: RewrapOptions): Promise<RewrapResult> {
  const { store, cipher, logger, signal } = options;
  const batchSize = Math.max(1, options.batchSize ?? 100);
  const maxPasses = Math.max(1, options.maxPasses ?? 3);
  const latest = await cipher.latestVersion();
  const totals: Counts = { rewrapped: 0, skipped: 0, failed: 0 };
  /** Rows already reported as failed, not retried by later passes of this run. */
  const failedIds = new Set<string>();

  logger.info({ event: "rewrap_started", kind: cipher.kind, latestVersion: latest }, "re-wrapping stored ciphertexts to the latest key version");

  /** Rows the key service refused are isolated one by one, so one bad row does not stall the job. */
  async function rewrapCandidates(candidates: readonly Candidate[], table: RewrapTable, counts: Counts): Promise<void> {
    const valid: Candidate[] = [];
    for (const candidate of candidates) {
      if (failedIds.has(candidate.id)) continue;
      try {
        for (const input of candidate.inputs) cipher.versionOf(input.ciphertext);
        valid.push(candidate);
      } catch {
        counts.failed += 1;
        failedIds.add(candidate.id);
        logger.error({ event: "rewrap_row_failed", table, id: candidate.id, reason: "CIPHERTEXT_MALFORMED" }, `cannot re-wrap ${table} row ${candidate.id}: malformed ciphertext`);
      }
    }
    if (valid.length === 0) return;
    let outputs: string[][];
    try {
      const flat = await cipher.rewrapBatch(valid.flatMap((candidate) => candidate.inputs));
      let offset = 0;
      outputs = valid.map((candidate) => {
        const slice = flat.slice(offset, offset + candidate.inputs.length);
        offset += candidate.inputs.length;
        return slice;
      });
    } catch (error) {
      // Unavailable (or anything else) ends the run; it resumes where it stopped.
      if (!isBrokerError(error, "key_service_error")) throw error;
      if (valid.length > 1) {
        for (const candidate of valid) await rewrapCandidates([candidate], table, counts);
        return;
      }
      const only = valid[0];
      if (only) {
        counts.failed += 1;
        failedIds.add(only.id);
        logger.error({ event: "rewrap_row_failed", table, id: only.id, reason: error.reason }, `cannot re-wrap ${table} row ${only.id}: ${error.message}`);
      }
      return;
    }
    await Promise.all(
      valid.map(async (candidate, index) => {
        const written = await candidate.write(outputs[index] ?? []);
        if (written) counts.rewrapped += 1;
        else counts.skipped += 1;
      }),
    );
  }

  async function tokenSetsPass(): Promise<Counts> {
    const counts: Counts = { rewrapped: 0, skipped: 0, failed: 0 };
    const total = await store.countTokenSetsBelow(latest);
    let after: string | undefined;
    while (!signal?.aborted) {
      const rows = await store.tokenSetsBelow(latest, after, batchSize);
      if (rows.length === 0) break;
      after = rows[rows.length - 1]?.integrationId;
      const candidates = rows.map((row): Candidate => {
        const wrapAccess = versionBelow(row.accessTokenCiphertext);
        const wrapRefresh = row.refreshTokenCiphertext !== null && versionBelow(row.refreshTokenCiphertext);
        const inputs: CiphertextInput[] = [];
        if (wrapAccess) inputs.push({ ciphertext: row.accessTokenCiphertext, context: row.integrationId });
        if (wrapRefresh && row.refreshTokenCiphertext !== null) inputs.push({ ciphertext: row.refreshTokenCiphertext, context: row.integrationId });
        return {
          id: row.integrationId,
          inputs,
          write: (rewrapped) => {
            let index = 0;
            const access = wrapAccess ? (rewrapped[index++] ?? row.accessTokenCiphertext) : row.accessTokenCiphertext;
            const refresh = wrapRefresh ? (rewrapped[index++] ?? row.refreshTokenCiphertext) : row.refreshTokenCiphertext;
            return store.writeTokenSet(row, access, refresh);
          },
        };
      });
      await rewrapCandidates(candidates.filter((candidate) => candidate.inputs.length > 0), "token_sets", counts);
      options.onProgress?.({ table: "token_sets", done: counts.rewrapped + counts.skipped + counts.failed, total });
    }
    return counts;
  }

  async function sessionsPass(): Promise<Counts> {
    const counts: Counts = { rewrapped: 0, skipped: 0, failed: 0 };
    const total = await store.countSessionsBelow(latest);
    let after: string | undefined;
    while (!signal?.aborted) {
      const rows = await store.sessionsBelow(latest, after, batchSize);
      if (rows.length === 0) break;
      after = rows[rows.length - 1]?.sessionId;
      const candidates = rows
        .filter((row) => versionBelow(row.codeVerifierCiphertext))
        .map(
          (row): Candidate => ({
            id: row.sessionId,
            inputs: [{ ciphertext: row.codeVerifierCiphertext, context: row.sessionId }],
            write: async ([rewrapped]) => (rewrapped === undefined ? false : store.writeSession(row, rewrapped)),
          }),
        );
      await rewrapCandidates(candidates, "authorization_sessions", counts);
      options.onProgress?.({ table: "authorization_sessions", done: counts.rewrapped + counts.skipped + counts.failed, total });
    }
    return counts;
  }

  /** Below the latest version, or unparseable (then `rewrapCandidates` reports it). */
  function versionBelow(ciphertext: string): boolean {
    try {
      return cipher.versionOf(ciphertext) < latest;
    } catch {
      return true;
    }
  }

  for (let pass = 1; pass <= maxPasses && !signal?.aborted; pass += 1) {
    const tokens = await tokenSetsPass();
    const sessions = await sessionsPass();
    totals.rewrapped += tokens.rewrapped + sessions.rewrapped;
    totals.skipped += tokens.skipped + sessions.skipped;
    totals.failed += tokens.failed + sessions.failed;
    if (tokens.skipped + sessions.skipped === 0) break;
  }

  const result: RewrapResult = { ...totals, latestVersion: latest };
  logger.info(
    { event: signal?.aborted ? "rewrap_interrupted" : "rewrap_finished", kind: cipher.kind, ...result },
    signal?.aborted ? "re-wrap interrupted; run it again to continue" : "re-wrap finished",
  );
  return result;
}
