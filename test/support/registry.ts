/**
 * A local registry holding the nginx stand-in, and the mirror setting that makes
 * `docker.io/library/nginx:1.27-alpine` resolve to it. The work is in src/local/.
 */
import type { RegistryMirror } from '../../src/agent/image/sources.ts';
import { publishNginxStandIn, type StandInLayout } from '../../src/local/images.ts';
import { LocalRegistry, type RegistryOptions } from '../../src/local/registry.ts';

export interface NginxRegistry {
  registry: LocalRegistry;
  /** `{ registry: 'docker.io', endpoints: [registry.url], insecure: true }`. */
  mirror: RegistryMirror;
  /** The single-platform image, as users name it: `docker.io/library/nginx:1.27-alpine`. */
  image: string;
  /** The multi-arch index (linux/amd64 + a dummy linux/arm64): `docker.io/library/nginx:multi`. */
  multiArchImage: string;
  digests: StandInLayout['digests'];
  stop(): Promise<void>;
}

/** Starts a registry, publishes the stand-in (single image and index) and returns both. */
export async function startNginxRegistry(
  options: Pick<RegistryOptions, 'basicAuth'> = {},
): Promise<NginxRegistry> {
  const registry = await LocalRegistry.start(options);
  try {
    const credentials = options.basicAuth ? { credentials: options.basicAuth } : {};
    const published = await publishNginxStandIn(registry.host, credentials);
    await publishNginxStandIn(registry.host, {
      ...credentials,
      tag: 'index',
      repositoryAndTag: 'library/nginx:multi',
    });
    return {
      registry,
      mirror: { registry: 'docker.io', endpoints: [registry.url], insecure: true },
      image: 'docker.io/library/nginx:1.27-alpine',
      multiArchImage: 'docker.io/library/nginx:multi',
      digests: published.digests,
      stop: () => registry.stop(),
    };
  } catch (err) {
    await registry.stop();
    throw err;
  }
}
