"""Runs a wasm32-wasip1 command under Wasmtime (the `wasmtime` PyPI package,
Cranelift): python run_wasmtime.py <module.wasm> [args...]"""

import sys

from wasmtime import Engine, Linker, Module, Store, WasiConfig


def main() -> int:
    path, *args = sys.argv[1:]
    engine = Engine()
    linker = Linker(engine)
    linker.define_wasi()
    store = Store(engine)
    wasi = WasiConfig()
    wasi.argv = [path, *args]
    wasi.inherit_stdout()
    wasi.inherit_stderr()
    store.set_wasi(wasi)
    instance = linker.instantiate(store, Module.from_file(engine, path))
    instance.exports(store)["_start"](store)
    return 0


if __name__ == "__main__":
    sys.exit(main())
