import { defineConfig } from 'vite';

/**
 * The dashboard builds to `dist/` as static files the coordinator serves at `/`. Relative URLs
 * (`base: './'`), so it also works behind a reverse proxy's path prefix. `pnpm --filter
 * @titancompute/dashboard dev` serves it with hot reload and proxies the API to a coordinator
 * on 127.0.0.1:8080 (`TITAN_DASHBOARD_API` to point elsewhere).
 */
export default defineConfig({
  base: './',
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    sourcemap: false,
    reportCompressedSize: false,
    chunkSizeWarningLimit: 200,
  },
  server: {
    proxy: { '/dashboard/api': { target: process.env.TITAN_DASHBOARD_API ?? 'http://127.0.0.1:8080', changeOrigin: true } },
  },
});
