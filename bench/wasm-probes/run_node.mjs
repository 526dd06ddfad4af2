// Runs a wasm32-wasip1 command under node's V8: node run_node.mjs <module.wasm> [args...]
import { readFile } from "node:fs/promises";
import { WASI } from "node:wasi";
import process from "node:process";

const [, , path, ...args] = process.argv;
const wasi = new WASI({ version: "preview1", args: [path, ...args], env: {}, preopens: {} });
const module = await WebAssembly.compile(await readFile(path));
const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
process.exitCode = wasi.start(instance);
