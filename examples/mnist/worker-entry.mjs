// Worker entry point: loads the TypeScript worker through tsx's API. (Node 20 does not apply
// `execArgv: ['--import', 'tsx']` hooks to a worker's own entry file; tsImport works everywhere.)
import { tsImport } from 'tsx/esm/api';

await tsImport('./worker.ts', import.meta.url);
