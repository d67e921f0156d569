import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { ImageConfig } from '../../domain/image.js';
import { containerArgv, containerEnv, containerUser, ociConfig, preparedConfig } from './oci.js';

const config: ImageConfig = {
  entrypoint: ['/bin/app'],
  cmd: ['serve', '--port=8080'],
  env: ['PATH=/opt/bin', 'MODE=image'],
  workingDir: '/srv',
  user: '',
  exposedPorts: ['8080/tcp'],
};
const rootfs = mkdtempSync(join(tmpdir(), 'hearth-oci-'));
mkdirSync(join(rootfs, 'etc'));
writeFileSync(join(rootfs, 'etc/passwd'), 'root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n');
writeFileSync(join(rootfs, 'etc/group'), 'root:x:0:\nstaff:x:50:\n');
afterAll(() => rmSync(rootfs, { recursive: true, force: true }));

describe('command and args over Entrypoint and Cmd, as Kubernetes', () => {
  it('keeps the image when neither is given', () => {
    expect(containerArgv(config, undefined, undefined)).toEqual(['/bin/app', 'serve', '--port=8080']);
  });
  it('args replace Cmd only', () => {
    expect(containerArgv(config, undefined, ['check'])).toEqual(['/bin/app', 'check']);
  });
  it('command replaces Entrypoint and drops Cmd; with args, they follow it', () => {
    expect(containerArgv(config, ['/bin/other'], undefined)).toEqual(['/bin/other']);
    expect(containerArgv(config, ['/bin/other'], ['x'])).toEqual(['/bin/other', 'x']);
  });
});

describe('environment and user', () => {
  it('the function env wins over the image env, in the image order', () => {
    expect(containerEnv(config.env, { MODE: 'function', EXTRA: '1' })).toEqual([
      'PATH=/opt/bin',
      'MODE=function',
      'EXTRA=1',
    ]);
  });
  it('User as numbers or names of the rootfs; an unknown name is refused', () => {
    expect(containerUser(rootfs, '')).toEqual({ uid: 0, gid: 0 });
    expect(containerUser(rootfs, '1000')).toEqual({ uid: 1000, gid: 1001 });
    expect(containerUser(rootfs, 'app:staff')).toEqual({ uid: 1000, gid: 50 });
    expect(() => containerUser(rootfs, 'nobody-here')).toThrow(/names no user/);
  });
});

describe('the walls in the OCI config', () => {
  const image = { reference: 'dir:/x', manifestDigest: '', rootfs, config, sizeBytes: 0 };
  const oci = ociConfig({ image, env: {}, tmpBytes: 8 * 1024 ** 2, protocol: 'lambda' });
  it('namespaces, read-only root, no capabilities, no new privileges, /tmp of limits.tmp', () => {
    const linux = oci.linux as { namespaces: { type: string }[]; uidMappings: { hostID: number }[] };
    expect(linux.namespaces.map((ns) => ns.type).sort()).toEqual(['ipc', 'mount', 'pid', 'user', 'uts']);
    expect(linux.uidMappings[0]?.hostID).toBeGreaterThan(65_535);
    expect(oci.root).toMatchObject({ readonly: true });
    const process = oci.process as { noNewPrivileges: boolean; capabilities: Record<string, string[]> };
    expect(process.noNewPrivileges).toBe(true);
    expect(Object.values(process.capabilities).flat()).toEqual([]);
    const tmp = (oci.mounts as { destination: string; options: string[] }[]).find(
      (m) => m.destination === '/tmp',
    );
    expect(tmp?.options).toContain(`size=${8 * 1024 ** 2}`);
  });
  it('the sandbox filter by name: mount and ptrace refused, io_uring not implemented', () => {
    const seccomp = (oci.linux as { seccomp: { syscalls: { names: string[]; errnoRet: number }[] } }).seccomp;
    const denied = seccomp.syscalls.find((rule) => rule.names.includes('mount'));
    expect(denied?.names).toContain('ptrace');
    expect(denied?.errnoRet).toBe(1);
    expect(seccomp.syscalls.find((rule) => rule.names.includes('io_uring_setup'))?.errnoRet).toBe(38);
  });
  it('lambda: _HANDLER is the first word of the Cmd', () => {
    expect((oci.process as { env: string[] }).env).toContain('_HANDLER=serve');
  });
  it('a container made ahead does not depend on the function: same image, same config', () => {
    expect(JSON.stringify(preparedConfig(image, 64 * 1024 ** 2))).toBe(
      JSON.stringify(preparedConfig(image, 64 * 1024 ** 2)),
    );
    expect((preparedConfig(image, 64 * 1024 ** 2).process as { args: string[] }).args[0]).toBe(
      '/dev/.hearth/busybox',
    );
  });
});
