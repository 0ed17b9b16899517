#!/usr/bin/env -S node --no-warnings
// Cargo's runner for wasm32-wasip1 (see .cargo/config.toml): runs a .wasm file under
// Node's WASI with the current directory preopened, passing arguments and the exit code.
import { readFile } from 'node:fs/promises';
import { WASI } from 'node:wasi';
import process from 'node:process';

const [file, ...args] = process.argv.slice(2);
const wasi = new WASI({
  version: 'preview1',
  args: [file, ...args],
  env: process.env,
  preopens: { '.': process.cwd() },
  returnOnExit: true,
});
const module = await WebAssembly.compile(await readFile(file));
const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
process.exitCode = wasi.start(instance);
