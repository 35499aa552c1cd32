"""Dump every verse of a SWORD Bible module as JSON lines {"ref": "Gen.1.1", "raw": "<w ...>In</w> ..."}.

Runs under Debian's own /usr/bin/python3, the only interpreter that has the `Sword` bindings
(package python3-sword); bible_en_es.py calls it in a subprocess. Standard library only.

    /usr/bin/python3 data_scripts/sword_dump.py engWEB2015eb > web.jsonl
"""

import json
import sys

import Sword


def main() -> None:
    name = sys.argv[1]
    mgr = Sword.SWMgr()  # must outlive the module object: the module is owned by the manager
    mod = mgr.getModule(name)
    if mod is None:
        sys.exit(f"error: SWORD module {name} is not installed")
    mod.setKeyText("Gen 1:1")
    out = sys.stdout
    previous = None
    while True:
        # popError() returns '\x00' or '\x01', both truthy, so it cannot tell the end of the module:
        # at the last verse increment() leaves the key where it is, and that is how we stop.
        ref = mod.getKey().getOSISRefRangeText()
        if ref == previous:
            break
        previous = ref
        out.write(json.dumps({"ref": ref, "raw": mod.getRawEntry()}, ensure_ascii=False) + "\n")
        mod.increment()


if __name__ == "__main__":
    main()
