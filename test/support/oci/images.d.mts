export const IMAGE_CACHE: string;

export interface TwoTags {
  /** oci-archive files. */
  readonly v1: string;
  readonly v2: string;
}

/** A static Go HTTP server `FROM scratch` (Entrypoint /server, $PORT 8080, user 65534), as an oci-archive file. */
export function goImage(): Promise<string>;
/** Two tags sharing a 4 MiB base layer and differing in `/version.txt`, as oci-archive files. */
export function twoTagImages(): Promise<TwoTags>;
/** Copies an oci-archive into `host/repository:tag` over plain HTTP with skopeo. */
export function pushArchive(
  archive: string,
  target: string,
  credentials?: { username: string; password: string },
): Promise<void>;
