/**
 * @module Where `X-Callback-Url` may point, and the one way callbacks are sent. Private, loopback,
 * link-local, CGNAT, unspecified, multicast and reserved addresses (and their IPv4-mapped IPv6 forms) are
 * refused unless the operator's allow-list (`async.callback.allow`) names them: once the platform listens
 * beyond loopback, a caller could otherwise make it send requests into the network it sits in (cloud
 * metadata at 169.254.169.254, internal admin ports). The URL is vetted when the request is accepted
 * (400), and again at every send: the address the connection uses is the one the check approved, so a
 * name that resolves elsewhere by then (DNS rebinding) is refused. Redirects are never followed.
 */

import { lookup as dnsLookup } from 'node:dns/promises';
import { request as httpRequest, type IncomingMessage, type RequestOptions } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { BlockList, isIP, type LookupFunction } from 'node:net';
import { HearthError } from '../domain/errors.js';

/** Address ranges a callback may not reach unless allowed: [address, prefix, family]. */
const FORBIDDEN: readonly (readonly [string, number, 'ipv4' | 'ipv6'])[] = [
  ['0.0.0.0', 8, 'ipv4'], // "this network", including the unspecified 0.0.0.0
  ['10.0.0.0', 8, 'ipv4'],
  ['100.64.0.0', 10, 'ipv4'], // carrier-grade NAT
  ['127.0.0.0', 8, 'ipv4'],
  ['169.254.0.0', 16, 'ipv4'], // link-local, cloud metadata
  ['172.16.0.0', 12, 'ipv4'],
  ['192.0.0.0', 24, 'ipv4'], // IETF protocol assignments
  ['192.168.0.0', 16, 'ipv4'],
  ['198.18.0.0', 15, 'ipv4'], // benchmarking
  ['224.0.0.0', 4, 'ipv4'], // multicast
  ['240.0.0.0', 4, 'ipv4'], // reserved, and the broadcast address
  ['::', 128, 'ipv6'],
  ['::1', 128, 'ipv6'],
  ['64:ff9b::', 96, 'ipv6'], // NAT64: an IPv4 address in disguise
  ['2002::', 16, 'ipv6'], // 6to4: likewise
  ['fc00::', 7, 'ipv6'], // unique local
  ['fe80::', 10, 'ipv6'],
  ['fec0::', 10, 'ipv6'], // deprecated site-local
  ['ff00::', 8, 'ipv6'], // multicast
];

const HOST_NAME =
  /^(?=.{1,253}$)([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*\.?$/i;

/** An allow-list entry: an address, a CIDR (`10.1.2.0/24`, `fd00::/8`) or a host name. */
export function parseAllowEntry(
  entry: string,
):
  | { kind: 'address'; address: string; prefix: number; family: 'ipv4' | 'ipv6' }
  | { kind: 'host'; host: string }
  | undefined {
  const [address = '', prefixText, ...rest] = entry.split('/');
  const version = isIP(address);
  if (version !== 0 && rest.length === 0) {
    const max = version === 4 ? 32 : 128;
    const prefix =
      prefixText === undefined ? max : /^\d{1,3}$/.test(prefixText) ? Number(prefixText) : Number.NaN;
    if (!(prefix >= 0 && prefix <= max)) return undefined;
    return { kind: 'address', address, prefix, family: version === 4 ? 'ipv4' : 'ipv6' };
  }
  if (prefixText === undefined && HOST_NAME.test(entry) && !/^[\d.]+$/.test(entry))
    return { kind: 'host', host: normaliseHost(entry) };
  return undefined;
}

function normaliseHost(host: string): string {
  return host.toLowerCase().replace(/\.$/, '');
}

export class CallbackPolicy {
  private readonly forbidden = new BlockList();
  private readonly allowed = new BlockList();
  private readonly allowedHosts = new Set<string>();

  /** `allow`: entries already checked by the config schema (`parseAllowEntry`). */
  constructor(allow: readonly string[] = []) {
    for (const [address, prefix, family] of FORBIDDEN) this.forbidden.addSubnet(address, prefix, family);
    for (const entry of allow) {
      const parsed = parseAllowEntry(entry);
      if (parsed === undefined)
        throw new Error(`async.callback.allow: "${entry}" is not an address, CIDR or host name`);
      if (parsed.kind === 'host') this.allowedHosts.add(parsed.host);
      else this.allowed.addSubnet(parsed.address, parsed.prefix, parsed.family);
    }
  }

  /** Why this address may not be called back, or undefined when it may. */
  refusal(address: string): string | undefined {
    const family = isIP(address) === 6 ? 'ipv6' : 'ipv4';
    if (this.allowed.check(address, family)) return undefined;
    if (!this.forbidden.check(address, family)) return undefined;
    return `${address} is a private, loopback, link-local or reserved address (allow it with async.callback.allow in the platform config)`;
  }

  /**
   * Accept-time check of a header value: an http(s) URL whose host is (or resolves only to) addresses a
   * callback may reach. Throws HEARTH_E_VALIDATION naming the header, the value and the reason.
   */
  async vet(value: string): Promise<URL> {
    const refuse = (why: string): HearthError =>
      new HearthError('HEARTH_E_VALIDATION', `X-Callback-Url: got "${value}", expected ${why}`, {
        details: { field: 'X-Callback-Url', value, expected: why },
      });
    if (!/^https?:\/\//i.test(value) || !URL.canParse(value)) throw refuse('an http:// or https:// URL');
    const url = new URL(value);
    if (url.username !== '' || url.password !== '') throw refuse('a URL without user:password@');
    try {
      await this.resolve(url.hostname);
    } catch (error) {
      throw refuse(`a public destination: ${(error as Error).message}`);
    }
    return url;
  }

  /** The addresses of `hostname` (an IP literal or a name), all of them allowed; throws naming the first that is not. */
  private async resolve(hostname: string): Promise<{ address: string; family: number }[]> {
    const host = hostname.startsWith('[') ? hostname.slice(1, -1) : hostname;
    if (isIP(host) !== 0) {
      const why = this.refusal(host);
      if (why !== undefined) throw new Error(why);
      return [{ address: host, family: isIP(host) }];
    }
    let addresses: { address: string; family: number }[];
    try {
      addresses = await dnsLookup(host, { all: true, verbatim: true });
    } catch (error) {
      throw new Error(`${host} does not resolve (${(error as NodeJS.ErrnoException).code ?? 'DNS error'})`);
    }
    if (this.allowedHosts.has(normaliseHost(host))) return addresses;
    if (addresses.length === 0) throw new Error(`${host} does not resolve`);
    // One forbidden address is enough to refuse: which one a connection picks is not ours to choose.
    for (const { address } of addresses) {
      const why = this.refusal(address);
      if (why !== undefined) throw new Error(`${host} resolves to ${why}`);
    }
    return addresses;
  }

  /** A `lookup` for the socket that only ever yields addresses this policy approved, checked at connect time. */
  private readonly lookup: LookupFunction = (hostname, options, callback) => {
    this.resolve(hostname).then(
      (addresses) => {
        const wanted = options.family === 4 || options.family === 6 ? options.family : undefined;
        const usable = wanted === undefined ? addresses : addresses.filter((a) => a.family === wanted);
        const first = usable[0];
        if (options.all === true) callback(null, usable);
        else if (first === undefined)
          callback(
            Object.assign(new Error(`${hostname} has no usable address`), { code: 'ENOTFOUND' }),
            '',
            0,
          );
        else callback(null, first.address, first.family);
      },
      (error: Error) => callback(Object.assign(error, { code: 'EHOSTUNREACH' }), '', 0),
    );
  };

  /**
   * POSTs `body` to `url` through a connection pinned to a vetted address. Resolves with the status; a
   * redirect is not followed (it would lead to a destination nobody vetted) and counts as a failure.
   */
  async post(url: string, headers: Record<string, string>, body: Buffer, timeoutMs: number): Promise<number> {
    const target = new URL(url);
    const host = target.hostname.startsWith('[') ? target.hostname.slice(1, -1) : target.hostname;
    // An IP literal never reaches `lookup` (the socket connects to it directly), so it is checked here.
    if (isIP(host) !== 0) {
      const why = this.refusal(host);
      if (why !== undefined) throw new Error(why);
    }
    const options: RequestOptions = {
      method: 'POST',
      headers: { ...headers, 'content-length': String(body.length) },
      lookup: this.lookup,
      signal: AbortSignal.timeout(timeoutMs),
      agent: false,
    };
    const send = target.protocol === 'https:' ? httpsRequest : httpRequest;
    const response = await new Promise<IncomingMessage>((resolve, reject) => {
      const request = send(target, options, resolve);
      request.on('error', reject);
      request.end(body);
    });
    response.resume();
    await new Promise<void>((resolve) => {
      response.on('end', resolve);
      response.on('error', () => resolve());
      response.on('close', resolve);
    });
    return response.statusCode ?? 0;
  }
}
