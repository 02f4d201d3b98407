import path from 'node:path';

/** Every file the tool writes goes through writeAtomic (./write.ts): whole, fsynced, renamed into place. */
export { writeAtomic } from './write.js';

export function expandHome(p: string): string {
  if (p === '~' || p.startsWith('~/')) return path.join(process.env.HOME ?? '', p.slice(1));
  return p;
}
