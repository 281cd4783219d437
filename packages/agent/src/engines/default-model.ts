import { fileURLToPath } from 'node:url';

/**
 * Absolute path of the bundled test model (`models/llama-2-tiny-random.gguf` in this package),
 * resolved relative to the package so it also works after `pnpm deploy`.
 */
export const DEFAULT_MODEL_PATH: string = fileURLToPath(new URL('../../models/llama-2-tiny-random.gguf', import.meta.url));
