/**
 * @module GET /api/v1/namespaces/{namespace}/functions/{name}/logs — a function's captured output.
 * `?follow=1` streams new lines as NDJSON after the backlog until the client disconnects.
 */

import type { IncomingMessage, ServerResponse } from 'node:http';
import { invalidField } from '../../domain/errors.js';
import { parseDuration } from '../../domain/units.js';
import { sendJson } from '../../gateway/index.js';
import type { LogQuery, LogStore } from '../../observe/index.js';
import { type ApiContext, type ClusterLogs, existing, NODE_LOGS_HEADER, refFrom } from './context.js';
import type { Route } from './router.js';
import type { LogRecord } from './types.js';

const DEFAULT_LIMIT = 200;
const MAX_LIMIT = 10_000;

export function functionLogs(context: ApiContext): Route {
  return {
    method: 'GET',
    path: '/api/v1/namespaces/:namespace/functions/:name/logs',
    access: { action: 'logs' },
    summary:
      'Function logs (?since=10m|ISO, ?until=ISO, ?invocation=ID, ?q=TEXT, ?limit=N, ?after=ID, ?follow=1)',
    handle: async (request) => {
      const ref = refFrom(request);
      existing(context, ref);
      const query = parseLogQuery(ref.namespace, ref.name, request.query);
      const backlog = context.logs.query(query);
      const follow = ['1', 'true'].includes(request.query.get('follow') ?? '');
      const cluster = request.req.headers[NODE_LOGS_HEADER] === undefined ? context.clusterLogs : undefined;
      if (!follow && cluster !== undefined) {
        sendJson(
          request.res,
          200,
          await gathered(
            cluster,
            request.req.url ?? '',
            request.req.headers.authorization,
            backlog,
            query.limit,
          ),
        );
        return;
      }
      if (!follow) {
        sendJson(request.res, 200, { items: backlog });
        return;
      }
      if (cluster !== undefined) {
        await followCluster(cluster, context.logs, request.req, request.res, backlog, query);
        return;
      }
      const res = request.res;
      res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
      for (const record of backlog) res.write(`${JSON.stringify(record)}\n`);
      const stop = context.logs.follow(
        {
          namespace: ref.namespace,
          function: ref.name,
          ...(query.invocationId === undefined ? {} : { invocationId: query.invocationId }),
          ...(query.text === undefined ? {} : { text: query.text }),
        },
        (record) => res.write(`${JSON.stringify(record)}\n`),
      );
      // Comments keep idle connections from being cut by proxies; NDJSON readers skip blank lines.
      const heartbeat = setInterval(() => res.write('\n'), 15_000);
      res.once('close', () => {
        clearInterval(heartbeat);
        stop();
      });
    },
  };
}

/**
 * Cluster mode: this node's records and every other live node's, each marked with its node, merged by
 * time, the newest `limit` of them kept (as on one node). A node that did not answer is named in
 * `nodes.unreachable`, so a gap is never silent. Record ids are per node: `?after=` cursors are too.
 */
async function gathered(
  cluster: ClusterLogs,
  pathAndQuery: string,
  authorization: string | undefined,
  own: readonly LogRecord[],
  limit: number,
): Promise<{
  items: (LogRecord & { node: string })[];
  nodes: { answered: string[]; unreachable: { node: string; reason: string }[] };
}> {
  const peers = await cluster.fetchPeers(pathAndQuery, authorization);
  const items = own.map((record) => ({ ...record, node: cluster.nodeId }));
  const answered = [cluster.nodeId];
  const unreachable: { node: string; reason: string }[] = [];
  for (const peer of peers) {
    if ('error' in peer) {
      unreachable.push({ node: peer.node, reason: peer.error });
      continue;
    }
    answered.push(peer.node);
    for (const record of peer.items) items.push({ ...record, node: peer.node });
  }
  items.sort((a, b) =>
    a.time < b.time ? -1 : a.time > b.time ? 1 : a.node < b.node ? -1 : a.node > b.node ? 1 : a.id - b.id,
  );
  return {
    items: items.slice(Math.max(0, items.length - limit)),
    nodes: { answered: answered.sort(), unreachable },
  };
}

/**
 * `?follow=1` in cluster mode: the gathered backlog (as without follow), then every node's new lines as
 * they come, each marked with its node. A node that cannot be followed, or whose stream ends, is told as
 * an NDJSON line `{"unreachable": {"node", "reason"}}`. The peers followed are the live ones at the start.
 */
async function followCluster(
  cluster: ClusterLogs,
  logs: LogStore,
  req: IncomingMessage,
  res: ServerResponse,
  own: readonly LogRecord[],
  query: LogQuery,
): Promise<void> {
  const startedAt = new Date().toISOString();
  const url = new URL(req.url ?? '/', 'http://node');
  url.searchParams.delete('follow');
  const authorization = req.headers.authorization;
  const first = await gathered(cluster, `${url.pathname}${url.search}`, authorization, own, query.limit);
  res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
  for (const record of first.items) res.write(`${JSON.stringify(record)}\n`);
  for (const unreachable of first.nodes.unreachable) res.write(`${JSON.stringify({ unreachable })}\n`);
  // The peers' streams start from the request's start, so what their backlog already gave is skipped.
  const seen = new Set(first.items.map((record) => `${record.node}:${record.id}`));
  const send = (node: string, record: LogRecord): void => {
    const key = `${node}:${record.id}`;
    if (seen.has(key)) return;
    seen.add(key);
    res.write(`${JSON.stringify({ ...record, node })}\n`);
  };
  const stopLocal = logs.follow(
    {
      namespace: query.namespace,
      function: query.function,
      ...(query.invocationId === undefined ? {} : { invocationId: query.invocationId }),
      ...(query.text === undefined ? {} : { text: query.text }),
    },
    (record) => send(cluster.nodeId, record),
  );
  url.searchParams.set('follow', '1');
  url.searchParams.set('since', startedAt);
  url.searchParams.delete('limit');
  const stopPeers = cluster.followPeers(`${url.pathname}${url.search}`, authorization, send, (node, reason) =>
    res.write(`${JSON.stringify({ unreachable: { node, reason } })}\n`),
  );
  const heartbeat = setInterval(() => res.write('\n'), 15_000);
  res.once('close', () => {
    clearInterval(heartbeat);
    stopLocal();
    stopPeers();
  });
}

function parseLogQuery(namespace: string, name: string, params: URLSearchParams): LogQuery {
  const since = params.get('since');
  let sinceMs: number | undefined;
  if (since !== null && since !== '') {
    const ago = parseDuration(since);
    sinceMs = ago !== undefined ? Date.now() - ago : Date.parse(since);
    if (Number.isNaN(sinceMs))
      throw invalidField('since', since, 'a duration such as "10m" or an ISO-8601 time');
  }
  const until = params.get('until');
  let untilMs: number | undefined;
  if (until !== null && until !== '') {
    const ago = parseDuration(until);
    untilMs = ago !== undefined ? Date.now() - ago : Date.parse(until);
    if (Number.isNaN(untilMs))
      throw invalidField('until', until, 'a duration such as "5m" (ago) or an ISO-8601 time');
  }
  const limitText = params.get('limit');
  const limit = limitText === null ? DEFAULT_LIMIT : Number(limitText);
  if (!/^\d{1,5}$/.test(limitText ?? '1') || !Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT)
    throw invalidField('limit', limitText, `a whole number from 1 to ${MAX_LIMIT}`);
  const afterText = params.get('after');
  const after = afterText === null ? undefined : Number(afterText);
  // Record ids count up from 1; "-5", "1e3" or "" would quietly mean "from the start".
  if (afterText !== null && (!/^\d{1,15}$/.test(afterText) || after === undefined))
    throw invalidField('after', afterText, 'a log record id (a whole number, 0 or more)');
  const invocation = params.get('invocation');
  const text = params.get('q');
  return {
    namespace,
    function: name,
    limit,
    ...(sinceMs === undefined ? {} : { since: sinceMs }),
    ...(untilMs === undefined ? {} : { until: untilMs }),
    ...(after === undefined ? {} : { afterId: after }),
    ...(invocation === null || invocation === '' ? {} : { invocationId: invocation }),
    ...(text === null || text === '' ? {} : { text }),
  };
}
