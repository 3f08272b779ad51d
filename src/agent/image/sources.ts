/**
 * Where an image is pulled from: the mirrors configured for its registry in ClusterImpConfig,
 * in order, then the registry itself.
 */
import type { ClusterImpConfigSpec } from '../../api/config.ts';
import { canonicalRegistry, type ImageReference } from './reference.ts';

/** A mirror as ClusterImpConfig declares it. */
export type RegistryMirror = NonNullable<ClusterImpConfigSpec['registryMirrors']>[number];

/** One place to try; `location` is what follows `docker://` in a skopeo reference. */
export interface PullSource {
  /** For logs and errors, e.g. `mirror http://127.0.0.1:5000` or `registry docker.io`. */
  label: string;
  /** Host, optional path prefix and repository, e.g. `127.0.0.1:5000/library/nginx`. */
  location: string;
  /** False only for mirrors marked insecure: plain HTTP or unverified TLS is then allowed. */
  tlsVerify: boolean;
}

interface ParsedMirror {
  registry: string;
  endpoints: { url: string; hostAndPath: string }[];
  insecure: boolean;
}

/**
 * Checks mirror endpoints once, when the store is created, so a typo fails at start rather
 * than at the first pull. A plain `http://` endpoint is refused unless the mirror is marked
 * insecure, because the image would otherwise travel unauthenticated by accident.
 */
export function parseMirrors(mirrors: readonly RegistryMirror[]): ParsedMirror[] {
  return mirrors.map((mirror) => ({
    registry: canonicalRegistry(mirror.registry),
    insecure: mirror.insecure ?? false,
    endpoints: mirror.endpoints.map((endpoint) => {
      const where = `registry mirror ${endpoint} for ${mirror.registry}`;
      const url = parseEndpoint(endpoint, where);
      if (url.protocol === 'http:' && !mirror.insecure) {
        throw new Error(`${where} uses plain HTTP: set insecure: true to allow it`);
      }
      if (url.search || url.hash || url.username) {
        throw new Error(`${where} must be a base URL without query, fragment or credentials`);
      }
      // A path prefix is how proxy caches such as Harbor's serve several upstreams.
      const path = url.pathname.replace(/^\/+|\/+$/g, '');
      return { url: endpoint, hostAndPath: path ? `${url.host}/${path}` : url.host };
    }),
  }));
}

function parseEndpoint(endpoint: string, where: string): URL {
  const withScheme = /^[a-z]+:\/\//i.test(endpoint) ? endpoint : `https://${endpoint}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch (err) {
    throw new Error(`${where} is not a URL`, { cause: err });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new Error(`${where} must use http or https`);
  }
  return url;
}

/**
 * The sources for `ref`, in the order to try them. With `fallBackToOrigin` false, a registry
 * that has mirrors is reached only through them (air-gapped nodes; tests that must not
 * touch the network).
 */
export function pullSources(
  ref: ImageReference,
  mirrors: readonly ParsedMirror[],
  fallBackToOrigin: boolean,
): PullSource[] {
  const sources: PullSource[] = [];
  for (const mirror of mirrors) {
    if (mirror.registry !== ref.registry) continue;
    for (const endpoint of mirror.endpoints) {
      sources.push({
        label: `mirror ${endpoint.url}`,
        location: `${endpoint.hostAndPath}/${ref.repository}`,
        tlsVerify: !mirror.insecure,
      });
    }
  }
  if (sources.length === 0 || fallBackToOrigin) {
    sources.push({
      label: `registry ${ref.registry}`,
      location: `${ref.registry}/${ref.repository}`,
      tlsVerify: true,
    });
  }
  return sources;
}
