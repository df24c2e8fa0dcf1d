// The engine argument of the public functional entry points and of the layers: checked once,
// here, as an Engine from createEngine() (the ops themselves run on its Core).
import { Engine } from '../engine.js';
import { InvalidArgumentError, describe } from '../errors.js';
import type { Core } from '../exec.js';

export function checkEngine(engine: unknown): Engine {
  if (!(engine instanceof Engine)) throw new InvalidArgumentError('engine', 'an Engine from createEngine()', describe(engine));
  return engine;
}

/** An op on an engine's kernels as a public entry point: the same arguments, the engine checked first. */
export function onEngine<A extends unknown[], R>(op: (core: Core, ...args: A) => R): (engine: Engine, ...args: A) => R {
  return (engine, ...args) => op(checkEngine(engine), ...args);
}
