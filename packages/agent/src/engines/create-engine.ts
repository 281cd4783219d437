import { AgentConfigError } from '../errors.js';
import type { Engine, EngineName } from './engine.js';
import type { HttpTimeouts } from './http-stream.js';
import { createLlamaCppEngine, defaultLlamaThreads } from './llama-cpp-engine.js';
import { createOllamaEngine } from './ollama-engine.js';
import { createOpenAiEngine, type OpenAiApi } from './openai-engine.js';

/** Everything the built-in engines may need; each uses its part. */
export interface EngineSettings {
  modelPath?: string | undefined;
  modelName?: string | undefined;
  supportedModels?: readonly string[] | undefined;
  preloadModels?: readonly string[] | undefined;
  threads?: number | undefined;
  contextSize?: number | undefined;
  maxConcurrentJobs: number;
  ollamaHost?: string | undefined;
  openaiUrl?: string | undefined;
  openaiApiKey?: string | undefined;
  openaiApi?: OpenAiApi | undefined;
  timeouts?: Partial<HttpTimeouts> | undefined;
}

/**
 * Creates a built-in engine by name. llama-cpp serves `modelPath` (default: the bundled tiny
 * model) under `modelName`, or the SUPPORTED_MODELS names, or the file's basename.
 */
export function createEngine(name: EngineName, s: EngineSettings): Engine {
  const names = s.supportedModels?.length ? s.supportedModels : s.modelName ? [s.modelName] : undefined;
  switch (name) {
    case 'llama-cpp':
      return createLlamaCppEngine({
        ...(s.modelPath ? { modelPath: s.modelPath } : {}),
        ...(names ? { modelNames: names } : {}),
        threads: s.threads ?? defaultLlamaThreads(),
        sequences: s.maxConcurrentJobs,
        ...(s.contextSize ? { contextSize: s.contextSize } : {}),
      });
    case 'ollama':
      return createOllamaEngine({
        ...(s.ollamaHost ? { host: s.ollamaHost } : {}),
        ...(names ? { models: names } : {}),
        ...(s.preloadModels ? { preloadModels: s.preloadModels } : {}),
        ...(s.timeouts ? { timeouts: s.timeouts } : {}),
      });
    case 'openai':
      if (!s.openaiUrl) throw new AgentConfigError('the openai engine needs --openai-url (TITAN_OPENAI_URL)', { option: 'openai-url' });
      return createOpenAiEngine({
        url: s.openaiUrl,
        ...(s.openaiApiKey ? { apiKey: s.openaiApiKey } : {}),
        ...(s.openaiApi ? { api: s.openaiApi } : {}),
        ...(names ? { models: names } : {}),
        ...(s.timeouts ? { timeouts: s.timeouts } : {}),
      });
  }
}
