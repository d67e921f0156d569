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

export interface ImageRecipe {
  /** `scratch` (default) or an oci-archive file to build on. */
  readonly from?: string;
  /** Path in the image → file or folder on this machine. */
  readonly copy?: Readonly<Record<string, string>>;
  readonly config?: {
    readonly entrypoint?: readonly string[];
    readonly cmd?: readonly string[];
    readonly env?: Readonly<Record<string, string>>;
    readonly workingDir?: string;
    readonly user?: string;
    /** `8080/tcp` */
    readonly ports?: readonly string[];
  };
  /** Bytes the cache key hashes besides the recipe (the contents of what `copy` names). */
  readonly sources?: readonly Buffer[];
}

/** Builds an image with buildah (cached under IMAGE_CACHE by name and hashes); answers its oci-archive file. */
export function buildImage(name: string, recipe: ImageRecipe): Promise<string>;
/** This machine's Node binary and its shared libraries `FROM scratch`, Entrypoint /usr/local/bin/node. */
export function nodeBaseImage(): Promise<string>;
