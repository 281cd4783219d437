import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

/**
 * The folder of the built dashboard (`packages/dashboard/dist`, shipped as the private package
 * `@titancompute/dashboard`), or undefined when it is not built (`pnpm build` builds it).
 */
export function findDashboardAssets(): string | undefined {
  try {
    const pkg = createRequire(import.meta.url).resolve('@titancompute/dashboard/package.json');
    const dir = join(dirname(pkg), 'dist');
    return existsSync(join(dir, 'index.html')) ? dir : undefined;
  } catch {
    return undefined;
  }
}
