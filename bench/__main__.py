"""`python -m bench [name ...]`: run the named benchmarks (default: all)."""
import importlib
import sys

BENCHES = ["png16", "filters_http", "pipeline", "acquisition", "forwarding", "orthanc_side", "burst", "dimse"]

names = sys.argv[1:] or BENCHES
for name in names:
    if name not in BENCHES:
        sys.exit(f"unknown benchmark {name!r} (known: {', '.join(BENCHES)})")
    importlib.import_module(f"bench.{name}").main()
