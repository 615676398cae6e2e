/**
 * CPU time of the processes a benchmark runs on this machine, so a throughput figure comes with
 * what each call cost: on a two-core machine the load generator, the server under test and
 * PostgreSQL share the cores, and a server that makes the database work harder is slower for it.
 */
import { readdirSync, readFileSync } from "node:fs";

/** Linux's USER_HZ: /proc reports CPU times in these ticks on every architecture Node runs on. */
const TICKS_PER_SECOND = 100;

/** CPU (user + system) this process has used, in microseconds. */
export function processCpuMicros(): number {
  const usage = process.cpuUsage();
  return usage.user + usage.system;
}

/**
 * CPU used so far by every local process named `postgres` (an embedded server's and the local
 * server's alike), in microseconds; undefined where /proc cannot tell (not Linux). A database on
 * another machine does not show up: its figure is then 0.
 */
export function localPostgresCpuMicros(): number | undefined {
  let entries: string[];
  try {
    entries = readdirSync("/proc");
  } catch {
    return undefined;
  }
  let ticks = 0;
  for (const pid of entries) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      if (readFileSync(`/proc/${pid}/comm`, "utf8").trim() !== "postgres") continue;
      // Fields after the parenthesised command name; utime and stime are the 14th and 15th of the line.
      const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
      ticks += Number(fields[11] ?? 0) + Number(fields[12] ?? 0);
    } catch {
      // The process ended between the listing and the read.
    }
  }
  return (ticks * 1e6) / TICKS_PER_SECOND;
}

/** CPU (user + system) used so far by process `pid`, in microseconds; undefined once it is gone or off Linux. */
export function pidCpuMicros(pid: number): number | undefined {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
    return ((Number(fields[11] ?? 0) + Number(fields[12] ?? 0)) * 1e6) / TICKS_PER_SECOND;
  } catch {
    return undefined;
  }
}

/** Resident set size of process `pid` (VmRSS in /proc/<pid>/status), in bytes; undefined where it cannot be read. */
export function pidRssBytes(pid: number): number | undefined {
  try {
    const line = readFileSync(`/proc/${pid}/status`, "utf8").split("\n").find((l) => l.startsWith("VmRSS:"));
    const kib = line === undefined ? Number.NaN : Number(line.replace(/[^0-9]/g, ""));
    return Number.isFinite(kib) ? kib * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** The machine's CPU time so far, from /proc/stat's first line (all cores, in ticks); undefined off Linux. */
export interface MachineCpu {
  readonly total: number;
  readonly idle: number;
  /** Time the hypervisor ran something else while this machine wanted a core. */
  readonly steal: number;
}

export function machineCpu(): MachineCpu | undefined {
  try {
    const [, ...fields] = (readFileSync("/proc/stat", "utf8").split("\n")[0] ?? "").trim().split(/\s+/);
    // user nice system idle iowait irq softirq steal (guest time is already counted in user).
    const ticks = fields.slice(0, 8).map(Number);
    if (ticks.length < 8 || ticks.some((t) => !Number.isFinite(t))) return undefined;
    return { total: ticks.reduce((a, b) => a + b, 0), idle: (ticks[3] ?? 0) + (ticks[4] ?? 0), steal: ticks[7] ?? 0 };
  } catch {
    return undefined;
  }
}

/**
 * How the machine was shared while a benchmark ran: the share of its CPU time that was busy, and
 * the share the hypervisor gave to other guests. A run with much stolen time measured a slower
 * machine than the one before it; ratios within the run still hold, absolute figures do not.
 */
export function describeMachineShare(before: MachineCpu | undefined, after: MachineCpu | undefined): string {
  if (before === undefined || after === undefined || after.total <= before.total) return "machine share: not readable here";
  const total = after.total - before.total;
  const busy = (total - (after.idle - before.idle)) / total;
  const stolen = (after.steal - before.steal) / total;
  return `machine share: ${(busy * 100).toFixed(0)} % of CPU time busy, ${(stolen * 100).toFixed(1)} % stolen by the host`;
}
