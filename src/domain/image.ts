/**
 * @module Container images as the rest of Hearth sees them (issue 17): the image store (`src/images`)
 * resolves a reference into a `ResolvedImage`; the container isolation runs one. Neither knows the other's
 * internals; both depend on these plain types.
 */

/** The parts of an OCI image config (`config` of application/vnd.oci.image.config.v1+json) Hearth honours. */
export interface ImageConfig {
  readonly entrypoint: readonly string[];
  readonly cmd: readonly string[];
  /** `KEY=value` entries, in the image's order. */
  readonly env: readonly string[];
  readonly workingDir: string;
  /** `uid[:gid]` or a name; empty for the image's default (root inside the container's user namespace). */
  readonly user: string;
  /** `8080/tcp` style keys of ExposedPorts. */
  readonly exposedPorts: readonly string[];
}

/** An image pulled, verified and unpacked on this node. */
export interface ResolvedImage {
  /** The reference as the user wrote it (`host:port/repo:tag`, `…@sha256:…`, or `oci-archive:…`). */
  readonly reference: string;
  /** Digest of the linux/amd64 manifest: what a version pins, so a moved tag never changes a deployed version. */
  readonly manifestDigest: string;
  /** Host directory of the unpacked root filesystem, never written after unpacking; mounted read-only. */
  readonly rootfs: string;
  readonly config: ImageConfig;
  /** Sum of the compressed layer sizes. */
  readonly sizeBytes: number;
}
