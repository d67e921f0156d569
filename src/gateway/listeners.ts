/**
 * @module Extra HTTP listeners for EventGateways whose `http.port` differs from the platform's: each serves
 * only its gateway's routes. Bound when the gateway is applied (a port in use refuses the apply), released
 * when it is deleted or its port changes.
 */

import type { Server } from 'node:http';
import { HearthError } from '../domain/errors.js';
import type { Scheduler } from '../scheduler/index.js';
import { isEventsPath } from './events-ingress.js';
import { type Handler, sendError } from './http.js';
import { createGatewayServer, createRoutesHandler } from './index.js';
import type { TlsReloader } from './tls.js';
import type { Traffic } from './traffic.js';

export interface ListenerStatus {
  readonly port: number;
  readonly listening: boolean;
  readonly error: string | null;
}

interface Bound {
  readonly port: number;
  readonly server: Server | undefined;
  readonly error: string | undefined;
}

export class GatewayListeners {
  private readonly bound = new Map<string, Bound[]>();

  constructor(
    private readonly options: {
      readonly host: string;
      readonly platformPort: () => number;
      readonly scheduler: Scheduler;
      readonly traffic: Traffic;
      readonly onInternal: (error: unknown) => void;
      /** `POST /events` (CloudEvents), served on a gateway's own port when none of its routes has the path. */
      readonly events?: Handler;
      /** HTTPS with the platform's certificate, when it has one. */
      readonly tls?: TlsReloader | undefined;
    },
  ) {}

  /**
   * Listens on `ports` for gateway `id` (keeping ports already bound). With `strict`, a port that cannot be
   * bound throws and nothing changes; otherwise (a restart) the failure is kept in the status.
   */
  async ensure(id: string, ports: readonly number[], strict: boolean): Promise<void> {
    const wanted = ports.filter((port) => port !== this.options.platformPort());
    const current = this.bound.get(id) ?? [];
    const fresh: Bound[] = [];
    for (const port of wanted) {
      const existing = current.find((entry) => entry.port === port && entry.server !== undefined);
      if (existing !== undefined) {
        fresh.push(existing);
        continue;
      }
      try {
        fresh.push({ port, server: await this.listen(id, port), error: undefined });
      } catch (error) {
        const message =
          (error as NodeJS.ErrnoException).code === 'EADDRINUSE'
            ? `port ${port} is in use`
            : (error as Error).message;
        if (strict) {
          await Promise.all(
            fresh.filter((entry) => !current.includes(entry)).map((entry) => close(entry.server)),
          );
          throw new HearthError(
            'HEARTH_E_CONFLICT',
            `gateway ${id}: cannot listen on ${this.options.host}:${port}: ${message}`,
            {
              details: { field: 'spec.protocols.http.port', value: port, expected: 'a free port' },
            },
          );
        }
        fresh.push({ port, server: undefined, error: message });
      }
    }
    await Promise.all(current.filter((entry) => !fresh.includes(entry)).map((entry) => close(entry.server)));
    if (fresh.length === 0) this.bound.delete(id);
    else this.bound.set(id, fresh);
  }

  status(id: string): ListenerStatus[] {
    return (this.bound.get(id) ?? []).map((entry) => ({
      port: entry.port,
      listening: entry.server !== undefined,
      error: entry.error ?? null,
    }));
  }

  /** Every port a gateway listens on now. */
  ports(): number[] {
    return [...this.bound.values()]
      .flat()
      .flatMap((entry) => (entry.server === undefined ? [] : [entry.port]));
  }

  async release(id: string): Promise<void> {
    const current = this.bound.get(id) ?? [];
    this.bound.delete(id);
    await Promise.all(current.map((entry) => close(entry.server)));
  }

  async close(): Promise<void> {
    await Promise.all([...this.bound.keys()].map((id) => this.release(id)));
  }

  private listen(id: string, port: number): Promise<Server> {
    const routes = createRoutesHandler(
      this.options.scheduler,
      this.options.traffic,
      this.options.onInternal,
      id,
    );
    const server = createGatewayServer(
      (req, res) => {
        if (routes(req, res)) return;
        if (this.options.events !== undefined && isEventsPath(req.url ?? '/')) this.options.events(req, res);
        else
          sendError(
            res,
            new HearthError(
              'HEARTH_E_NOT_FOUND',
              `gateway ${id} has no route for ${req.method ?? 'GET'} ${(req.url ?? '/').split('?')[0]}`,
            ),
          );
      },
      undefined,
      this.options.tls,
    );
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, this.options.host, () => {
        server.off('error', reject);
        resolve(server);
      });
    });
  }
}

function close(server: Server | undefined): Promise<void> {
  if (server === undefined) return Promise.resolve();
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
