/**
 * Image references as users write them in `spec.image`, normalised the way Docker and
 * Kubernetes do, so `nginx` and `docker.io/library/nginx:latest` name the same image.
 */

/** A parsed, fully qualified image reference. */
export interface ImageReference {
  /** Registry host (and port), e.g. `docker.io` or `127.0.0.1:5000`. */
  registry: string;
  /** Repository path inside the registry, e.g. `library/nginx`. */
  repository: string;
  tag?: string;
  /** `sha256:<hex>`; when set, it wins over the tag. */
  digest?: string;
  /** The canonical form, e.g. `docker.io/library/nginx:1.27-alpine`. */
  name: string;
}

export const dockerHub = 'docker.io';

// The grammar of github.com/distribution/reference, restricted to what registries accept.
const component = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
const repositoryPattern = new RegExp(`^${component}(?:/${component})*$`);
const label = '[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?';
const hostPattern = new RegExp(`^(?:${label}(?:\\.${label})*|\\[[a-fA-F0-9:]+\\])(?::[0-9]+)?$`);
const tagPattern = /^[\w][\w.-]{0,127}$/;
export const digestPattern = /^sha256:[a-f0-9]{64}$/;

/** Hosts that are Docker Hub under another name; credentials and mirrors use `docker.io`. */
const dockerHubAliases = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io']);

/** Maps Docker Hub's other host names to `docker.io`; other hosts are returned as given. */
export function canonicalRegistry(host: string): string {
  return dockerHubAliases.has(host.toLowerCase()) ? dockerHub : host;
}

/**
 * Parses `ref` and fills in what users may leave out: the `docker.io` registry, the
 * `library/` namespace of official images, and the `latest` tag.
 * Throws an error naming `ref` when it is not a valid reference.
 */
export function parseReference(ref: string): ImageReference {
  const invalid = (why: string) => new Error(`invalid image reference "${ref}": ${why}`);
  let rest = ref.trim();
  if (rest === '') throw invalid('it is empty');

  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!digestPattern.test(digest)) throw invalid('the digest must be sha256: and 64 hex digits');
  }

  // A colon after the last slash starts the tag; one before it belongs to host:port.
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!tagPattern.test(tag)) throw invalid(`"${tag}" is not a valid tag`);
  }

  let registry = dockerHub;
  let repository = rest;
  const slash = rest.indexOf('/');
  const first = slash >= 0 ? rest.slice(0, slash) : '';
  // Docker's rule: the first component is a host only if it looks like one.
  if (first.includes('.') || first.includes(':') || first === 'localhost') {
    if (!hostPattern.test(first)) throw invalid(`"${first}" is not a valid registry host`);
    registry = canonicalRegistry(first);
    repository = rest.slice(slash + 1);
  }
  if (registry === dockerHub && !repository.includes('/')) repository = `library/${repository}`;
  if (!repositoryPattern.test(repository)) {
    throw invalid(`"${repository}" is not a valid repository (lowercase letters, digits, . _ -)`);
  }

  if (!tag && !digest) tag = 'latest';
  const name = `${registry}/${repository}${tag ? `:${tag}` : ''}${digest ? `@${digest}` : ''}`;
  return { registry, repository, ...(tag ? { tag } : {}), ...(digest ? { digest } : {}), name };
}
