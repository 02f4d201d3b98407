/**
 * Running npm (and the installed commands) from a test, as a user would, with every
 * host but the npm registry unreachable: a local proxy answers 403 to everything and
 * records which hosts were asked for.
 */
import { spawn, spawnSync } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Asynchronous, so the proxy in this process can answer meanwhile. */
export function run(cmd: string, args: string[], opts: { env: NodeJS.ProcessEnv; cwd?: string; input?: Buffer; timeoutMs?: number }): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: opts.env, cwd: opts.cwd, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 5 * 60 * 1000);
    child.on('error', reject);
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
    child.stdin.end(opts.input);
  });
}

export interface DenyingProxy {
  url: string;
  /** host:port of each CONNECT, host of each plain request, in order. */
  asked: string[];
  close(): Promise<void>;
}

/** An HTTP(S) proxy that refuses everything: "unreachable", but we see who tried. */
export async function denyingProxy(): Promise<DenyingProxy> {
  const asked: string[] = [];
  const server = http.createServer((req, res) => {
    asked.push(new URL(req.url ?? '/', 'http://unknown').host);
    res.writeHead(403).end('no network in this test\n');
  });
  server.on('connect', (req: http.IncomingMessage, socket: import('node:net').Socket) => {
    asked.push(req.url ?? '');
    socket.end('HTTP/1.1 403 Forbidden\r\n\r\n');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    asked,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/** The registry npm uses here (from its config), which stays reachable. */
export function npmRegistryHost(): string {
  const r = spawnSync('npm', ['config', 'get', 'registry'], { encoding: 'utf8', env: npmEnv(process.env) });
  return new URL(r.stdout.trim() || 'https://registry.npmjs.org/').hostname;
}

/**
 * The environment of a user's shell: no npm_* variables that `npm test` set for its own
 * script (they would act as npm config in the child), except where the cache and
 * registry are, so the cache `npm ci` filled is reused.
 */
export function npmEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const keep = /^npm_config_(cache|registry|userconfig|globalconfig)$/i;
  return Object.fromEntries(Object.entries(env).filter(([k]) => !/^npm_/i.test(k) || keep.test(k)));
}

/** Every host but the registry goes through the refusing proxy; npm and install scripts alike. */
export function offlineEnv(env: NodeJS.ProcessEnv, proxy: DenyingProxy, registryHost: string): NodeJS.ProcessEnv {
  const clean = Object.fromEntries(Object.entries(npmEnv(env)).filter(([k]) => !/^(https?_proxy|no_proxy|all_proxy|global_agent_.*|onnxruntime_node_.*)$/i.test(k)));
  return {
    ...clean,
    HTTPS_PROXY: proxy.url,
    HTTP_PROXY: proxy.url,
    https_proxy: proxy.url,
    http_proxy: proxy.url,
    NO_PROXY: registryHost,
    no_proxy: registryHost,
    // onnxruntime-node's script reaches NuGet through global-agent, which reads only these.
    GLOBAL_AGENT_HTTPS_PROXY: proxy.url,
    GLOBAL_AGENT_HTTP_PROXY: proxy.url,
  };
}
