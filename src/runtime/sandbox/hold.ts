/**
 * @module The shell step that holds a sandboxed command until the platform says go, shared by the sandbox's
 * network hold (builds and linked stem cells), the container supervisor's linked namespace and the fork
 * server's placeholder: it writes one byte on a descriptor the platform holds the other end of (the
 * namespaces then exist), and reads one line from it.
 */

/** Shell words: say "started" on `fd`, then read the platform's line from it into `$variable`. */
export function waitForGo(fd: number, variable = 'go'): string {
  return `printf r >&${fd} && read -r ${variable} <&${fd}`;
}

/** A command (`sh -c`, `$0` = `name`) that runs the command after it only once told go on `fd`, without `fd`. */
export function holdUntilGo(fd: number, name: string): string[] {
  return ['/bin/sh', '-c', `${waitForGo(fd)} && exec "$@" ${fd}<&-`, name];
}
