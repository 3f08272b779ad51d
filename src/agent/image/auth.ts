/**
 * Registry credentials from image pull secrets (`kubernetes.io/dockerconfigjson`), turned into
 * the auth file skopeo reads. The file is the only way they reach skopeo: command-line
 * arguments would show them to every user of the node through `ps`.
 */
import { canonicalRegistry } from './reference.ts';

/** One entry of a dockerconfigjson `auths` map, as Docker and kubectl write them. */
export interface DockerAuthEntry {
  /** base64 of `username:password`. */
  auth?: string;
  username?: string;
  password?: string;
  identitytoken?: string;
}

/** The parsed `.dockerconfigjson` of an image pull secret. */
export interface DockerConfigJson {
  auths?: Record<string, DockerAuthEntry>;
}

/**
 * Rewrites `config` into the form containers/image understands: keys are bare hosts (with an
 * optional repository path), Docker Hub is `docker.io`, and every password sits in `auth`.
 * Entries that carry no credentials are dropped.
 */
export function toSkopeoAuth(config: DockerConfigJson): { auths: Record<string, DockerAuthEntry> } {
  const auths: Record<string, DockerAuthEntry> = {};
  for (const [key, entry] of Object.entries(config.auths ?? {})) {
    const converted: DockerAuthEntry = {};
    if (entry.auth) converted.auth = entry.auth;
    else if (entry.username !== undefined && entry.password !== undefined) {
      converted.auth = Buffer.from(`${entry.username}:${entry.password}`).toString('base64');
    }
    if (entry.identitytoken) converted.identitytoken = entry.identitytoken;
    if (!converted.auth && !converted.identitytoken) continue;
    auths[authKey(key)] ??= converted;
  }
  return { auths };
}

/**
 * `https://index.docker.io/v1/` is how `docker login` names Docker Hub; other tools write
 * `registry.example.com` or `https://registry.example.com`. All become a host[/path].
 */
export function authKey(key: string): string {
  const bare = key
    .trim()
    .replace(/^[a-z]+:\/\//i, '')
    .replace(/\/+(v1|v2)\/*$/, '')
    .replace(/\/+$/, '');
  const slash = bare.indexOf('/');
  const host = slash >= 0 ? bare.slice(0, slash) : bare;
  return canonicalRegistry(host) + (slash >= 0 ? bare.slice(slash) : '');
}

/** Parses the `.dockerconfigjson` value of a Secret, naming the secret when it is malformed. */
export function parseDockerConfigJson(text: string, secretName: string): DockerConfigJson {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new Error(`image pull secret ${secretName} does not hold valid JSON`, { cause: err });
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new Error(`image pull secret ${secretName} is not a dockerconfigjson object`);
  }
  const auths = (parsed as { auths?: unknown }).auths;
  if (auths !== undefined && (typeof auths !== 'object' || auths === null)) {
    throw new Error(`image pull secret ${secretName} has an "auths" that is not an object`);
  }
  return parsed as DockerConfigJson;
}

/** Merges several pull secrets; as in Kubernetes, the first secret naming a host wins. */
export function mergeDockerConfigs(configs: DockerConfigJson[]): DockerConfigJson {
  const auths: Record<string, DockerAuthEntry> = {};
  for (const config of configs) {
    for (const [key, entry] of Object.entries(config.auths ?? {})) {
      auths[authKey(key)] ??= entry;
    }
  }
  return { auths };
}
