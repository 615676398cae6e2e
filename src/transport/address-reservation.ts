/**
 * The listen addresses are claimed before anything else starts: a busy or forbidden port then
 * fails the start in milliseconds, naming its variable, instead of after the database was
 * started and migrated. The claim is held until the listeners bind (released just before), so
 * the window in which another process could take the port is a few microseconds.
 */
import { createServer, type Server } from "node:net";
import type { ListenAddress } from "../config/types.js";
import { BrokerError } from "../domain/errors.js";
import { formatAddress } from "./grpc-listener.js";

export interface ListenClaim {
  /** The environment variable the address came from, for the error message. */
  readonly variable: string;
  readonly address: ListenAddress;
}

export interface AddressReservation {
  /** Frees the claimed ports; idempotent. */
  release(): Promise<void>;
}

export async function reserveListenAddresses(claims: readonly ListenClaim[]): Promise<AddressReservation> {
  const held: Server[] = [];
  const release = async () => {
    await Promise.all(held.splice(0).map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
  };
  try {
    // Port 0 asks the system for any free port: there is nothing to claim.
    for (const claim of claims.filter((c) => c.address.port !== 0)) held.push(await hold(claim));
  } catch (error) {
    await release();
    throw error;
  }
  return { release };
}

function hold({ variable, address }: ListenClaim): Promise<Server> {
  return new Promise((resolve, reject) => {
    // A probe or client that connects while the broker starts is turned away at once: an open
    // connection would keep close() (and so the start) waiting until the client gives up.
    const server = createServer((socket) => socket.destroy());
    server.once("error", (error: NodeJS.ErrnoException) => reject(refusal(variable, address, error)));
    server.listen({ host: address.host, port: address.port, exclusive: true }, () => resolve(server));
  });
}

function refusal(variable: string, address: ListenAddress, error: NodeJS.ErrnoException): BrokerError {
  const where = `${variable} ${formatAddress(address)}`;
  const fix = `set ${variable} to a free host:port`;
  const message =
    error.code === "EADDRINUSE"
      ? `${where} is already in use; ${fix}`
      : error.code === "EACCES"
        ? `${where} may not be bound by this user (ports below 1024 need privileges); ${fix}`
        : error.code === "EADDRNOTAVAIL" || error.code === "ENOTFOUND"
          ? `${where} is not an address of this machine; ${fix}`
          : `${where} cannot be bound (${error.code ?? error.message}); ${fix}`;
  return new BrokerError("failed_precondition", message, { reason: "LISTEN_ADDRESS_UNAVAILABLE", cause: error });
}
